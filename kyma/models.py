"""Peewee models: accounts, credentials, the credit ledger, request log and shared route/limit state."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, ClassVar

from peewee import (
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    ModelDelete,
    ModelUpdate,
    SQL,
    TextField,
)

from kyma.db import database, wrote_nothing


def utcnow() -> datetime:
    """Naive UTC now (both SQLite and PostgreSQL store it the same way)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database


# Told after the commit of every write to a kept row's column (key_cache listens when it keeps rows).
_kept_row_listeners: list[Callable[[], None]] = []


def on_kept_row_change(listener: Callable[[], None]) -> None:
    """Call `listener` after each commit that changed a column of a row workers keep (KeptRow)."""
    if listener not in _kept_row_listeners:
        _kept_row_listeners.append(listener)


def kept_rows_changed() -> None:
    """Tell every listener that a kept row changed (its write has committed)."""
    for listener in _kept_row_listeners:
        listener()


class _KeptRowWrite:
    """An UPDATE or DELETE of kept rows: once it changed any, the listeners hear of it after the outermost
    commit (at once outside a transaction), never before another worker could read the new row."""

    def _execute(self, database):
        try:
            changed = super()._execute(database)
        except Exception as exc:
            # Outside a transaction the statement commits by itself: a lost answer may hide a change
            # that landed (inside one, db.write_transaction decides once the COMMIT's fate is known).
            if not database.in_transaction() and not wrote_nothing(exc):
                kept_rows_changed()
            raise
        if changed:
            database.after_commit(kept_rows_changed)
        return changed


class _KeptUpdate(_KeptRowWrite, ModelUpdate):
    pass


class _KeptDelete(_KeptRowWrite, ModelDelete):
    pass


class KeptRow(BaseModel):
    """A model whose rows every worker may keep a copy of to authenticate API keys (key_cache).

    An UPDATE of a column in `kept_columns`, or a DELETE, announces itself after its commit, whichever
    code path writes it: a forgotten announcement would let a revoked key work for the copy's lifetime.
    """

    kept_columns: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def update(cls, __data=None, **update):
        data = cls._normalize_data(__data, update)
        # Data that is not a field-to-value mapping cannot be checked: it counts as a change.
        if isinstance(data, dict) and not any(getattr(f, "name", None) in cls.kept_columns for f in data):
            return ModelUpdate(cls, data)
        return _KeptUpdate(cls, data)

    @classmethod
    def delete(cls):
        return _KeptDelete(cls)


class Account(KeptRow):
    """A customer. `balance_micros` caches the sum of its ledger entries (checked by `ledger check`)."""

    id = AutoField()
    email = CharField(max_length=254, unique=True)
    password_hash = CharField(max_length=100)
    balance_micros = BigIntegerField(default=0)
    lifetime_purchased_micros = BigIntegerField(default=0)
    tier = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)
    # A default in the schema too: rows written by plain SQL (an import, a script) are no admins.
    is_admin = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])  # may use the console under /admin
    suspended_at = DateTimeField(null=True)  # set: its keys and sessions are refused (403), nothing deleted

    kept_columns = frozenset({"id", "email", "tier", "suspended_at"})


class ApiKey(KeptRow):
    """A `ky-` API key; only its SHA-256 is stored, plus a short prefix for display."""

    id = AutoField()
    account = ForeignKeyField(Account, backref="keys", on_delete="CASCADE")
    name = CharField(max_length=100, default="default")
    key_hash = CharField(max_length=64, unique=True)
    prefix = CharField(max_length=16)
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    # Optional limits: none set costs a request nothing beyond the key lookup.
    credit_limit_micros = BigIntegerField(null=True)
    expires_at = DateTimeField(null=True)
    allowed_models = TextField(null=True)  # JSON list of catalog ids or aliases
    # Kept while the key has a credit limit: settled charges and open holds, changed with the ledger.
    spent_micros = BigIntegerField(default=0)
    held_micros = BigIntegerField(default=0)

    # last_used_at is kept too, but a stamp changes nothing a request may do: the stamping worker
    # updates its own copy (key_cache.replace), and no one else needs telling.
    kept_columns = frozenset({"id", "account", "name", "key_hash", "revoked_at", "credit_limit_micros",
                              "expires_at", "allowed_models"})


class SessionToken(BaseModel):
    """A `ks-` session token (API and dashboard); hashed, with idle and absolute expiry."""

    id = AutoField()
    account = ForeignKeyField(Account, backref="sessions", on_delete="CASCADE")
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    revoked_at = DateTimeField(null=True)


class LedgerEntry(BaseModel):
    """One append-only movement of credit in micro-dollars (positive adds, negative spends)."""

    KINDS = ("signup", "purchase", "grant", "hold", "release", "usage", "adjustment")

    id = AutoField()
    account = ForeignKeyField(Account, backref="ledger", on_delete="CASCADE")
    kind = CharField(max_length=16)
    amount_micros = BigIntegerField()
    request_id = CharField(max_length=64, null=True, index=True)
    idempotency_key = CharField(max_length=128, null=True, unique=True)
    note = CharField(max_length=200, default="")
    created_at = DateTimeField(default=utcnow)


class Hold(BaseModel):
    """Credit reserved for one in-flight request; settled or released exactly once."""

    id = AutoField()
    account = ForeignKeyField(Account, backref="holds", on_delete="CASCADE", index=False)  # see hold_open
    request_id = CharField(max_length=64, unique=True)
    amount_micros = BigIntegerField()
    owner = CharField(max_length=64, default="")  # host:pid of the worker that took it
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    closed_at = DateTimeField(null=True)


# Every query on holds but by request_id wants the open ones (the reaper, a balance, `ledger check`),
# and they are the few in flight: a partial index finds them without reading every hold ever taken.
Hold.add_index(Hold.account, where=Hold.closed_at.is_null(), name="hold_open")


class RequestLog(BaseModel):
    """One row per API request, successful or not."""

    id = AutoField()
    request_id = CharField(max_length=64, unique=True)
    account = ForeignKeyField(Account, null=True, backref="requests", on_delete="SET NULL")
    api_key = ForeignKeyField(ApiKey, null=True, on_delete="SET NULL", index=False)
    endpoint = CharField(max_length=40)
    model_requested = CharField(max_length=100, default="")
    alias = CharField(max_length=100, null=True)
    model_served = CharField(max_length=100, null=True)
    provider = CharField(max_length=100, null=True)
    simulated = BooleanField(default=False)
    fallback_layer = IntegerField(default=0)
    attempts = IntegerField(default=0)
    status = IntegerField()
    prompt_tokens = IntegerField(default=0)
    completion_tokens = IntegerField(default=0)
    cached_tokens = IntegerField(default=0)
    cost_micros = BigIntegerField(default=0)
    latency_ms = FloatField(default=0)
    ttft_ms = FloatField(null=True)
    stream = BooleanField(default=False)
    error = TextField(null=True)
    error_code = CharField(max_length=64, null=True)  # the error's code (model_not_found, …); NULL on success
    note = CharField(max_length=200, null=True)  # what the operator should know of a success (continued, …)
    upstream_cost_micros = BigIntegerField(default=0)  # every attempt's upstream cost; cost_micros is what was charged
    created_at = DateTimeField(default=utcnow, index=True)


class RouteOutcome(BaseModel):
    """The result of one upstream attempt of a request; feeds uptime and status, and the request's detail."""

    id = AutoField()
    request_id = CharField(max_length=64, null=True, index=True)
    model = CharField(max_length=100)
    provider = CharField(max_length=100)
    role = CharField(max_length=16, default="")  # "" first try or fallback, "retry" same route, "continuation"
    ok = BooleanField()
    status = IntegerField(null=True)
    error = CharField(max_length=200, null=True)
    latency_ms = FloatField(default=0)
    completion_tokens = IntegerField(default=0)  # what the attempt produced (a broken stream's part too)
    cost_micros = BigIntegerField(default=0)  # what the attempt cost upstream, charged or not
    created_at = DateTimeField(default=utcnow, index=True)


class StoredResponse(BaseModel):
    """A Responses API response kept for GET and previous_response_id: the conversation and its output."""

    id = CharField(max_length=64, primary_key=True)  # resp_…
    account = ForeignKeyField(Account, backref="responses", on_delete="CASCADE")
    input_items = TextField()  # JSON: the whole conversation's input items, history first
    response = TextField()  # JSON: the response object as the client received it
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)  # the reaper deletes it after this


class RouteState(BaseModel):
    """Circuit-breaker state of one provider route, shared by every worker."""

    route = CharField(max_length=200, primary_key=True)
    state = CharField(max_length=10, default="closed")  # closed | open | half_open
    failures = IntegerField(default=0)
    opened_until = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)
    manual = CharField(max_length=10, default="", constraints=[SQL("DEFAULT ''")])  # "" automatic | "open" held open by hand | "disabled"


class RateCounter(BaseModel):
    """A fixed-window counter for rate limits and login throttling (database backend)."""

    key = CharField(max_length=200)
    window = BigIntegerField()  # window start, epoch seconds
    count = BigIntegerField(default=0)

    class Meta:
        primary_key = False
        indexes = ((("key", "window"), True),)


class RateState(BaseModel):
    """One rate limit's continuous-refill state: when its allowance is full again (GCRA)."""

    key = CharField(max_length=200, primary_key=True)
    tat = BigIntegerField()  # theoretical arrival time, epoch microseconds
    per_minute = BigIntegerField()  # the limit the last admission used; refunds convert at this rate


class DeviceLogin(BaseModel):
    """A device-code log-in: a CLI polls with the device code while a signed-in browser approves the user code."""

    id = AutoField()
    device_hash = CharField(max_length=64, unique=True)  # SHA-256 of the device code the CLI polls with
    user_hash = CharField(max_length=64, unique=True)  # SHA-256 of the normalised user code typed in the browser
    client_name = CharField(max_length=100, default="")
    status = CharField(max_length=10, default="pending")  # pending | approved | denied | consumed
    account = ForeignKeyField(Account, null=True, on_delete="CASCADE")  # who approved it
    interval = IntegerField()  # seconds the CLI must wait between polls (grows on slow_down)
    last_polled_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()


class AuditEntry(BaseModel):
    """One operator action in the admin console; rows are only ever appended."""

    id = AutoField()
    actor = CharField(max_length=254)  # the admin's email, or what acted (the CLI, KYMA_ADMIN_EMAILS)
    action = CharField(max_length=40)
    target = CharField(max_length=254)
    before = TextField(null=True)  # JSON
    after = TextField(null=True)  # JSON
    created_at = DateTimeField(default=utcnow)


# Every index is written on every insert, and the request path inserts into these tables, so only
# indexes that a query needs exist. Older databases had these; `init-db` drops them.
OBSOLETE_INDEXES = ("ledgerentry_kind", "ledgerentry_created_at", "hold_closed_at", "hold_expires_at",
                    "hold_account_id", "requestlog_api_key_id", "requestlog_model_served", "requestlog_status",
                    "routeoutcome_model")

ALL_MODELS = (Account, ApiKey, SessionToken, LedgerEntry, Hold, RequestLog, RouteOutcome, RouteState, RateCounter,
              RateState, StoredResponse, DeviceLogin, AuditEntry)
