"""Accounts, API keys and session tokens: register, log in, authenticate, manage keys.

Secrets (`ky-` keys, `ks-` session tokens) are shown once and stored only as SHA-256 hex;
passwords only as bcrypt hashes. Authentication is one indexed read per request and caches
nothing, so a revoked key or ended session is refused by the very next request on any worker.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from peewee import IntegrityError, OperationalError

from kyma.db import as_datetime, query, write_transaction
from kyma.errors import AccountSuspended, AuthenticationFailed, Conflict, InvalidRequest, NotFound, RateLimited
from kyma.models import Account, ApiKey, SessionToken, utcnow
from kyma.nul import NUL
from kyma.services import counters, group_commit, key_cache, key_limits, ledger
from kyma.services.passwords import (check_password, dummy_hash, hash_password, needs_rehash,
                                     password_too_long)
from kyma.services.pricing import micros_to_usd, usd_to_micros

log = logging.getLogger(__name__)

KEY_PREFIX = "ky-"
SESSION_PREFIX = "ks-"
# token_urlsafe(32) is always 43 characters; anything else is refused before any query.
_CREDENTIAL_SHAPE = re.compile(r"^k[ys]-[A-Za-z0-9_-]{43}$")
# A local part of RFC 5322's unquoted characters, a domain of letters, digits, hyphens and dots:
# nothing that is markup or a list separator (`<script>@example.com` is not an address).
_EMAIL_SHAPE = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
                          r"(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}$")
MIN_PASSWORD_CHARS = 6
MAX_EMAIL_CHARS = 254
MAX_KEY_NAME_CHARS = 100
MAX_ACTIVE_KEYS = 50
# last_used_at / last_seen_at are stamped at most this often, keeping auth read-only in between.
TOUCH_EVERY = timedelta(minutes=1)
LOGIN_FAILED = "Invalid email or password."
INVALID_CREDENTIAL = "Invalid API key. Check that it is complete and has not been revoked."
SUSPENDED = "This account is suspended; contact the operator of this gateway."


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account and the credential used (an API key or a session token)."""

    account_id: int
    email: str
    tier: int
    api_key_id: int | None = None
    session_id: int | None = None
    key_name: str = ""
    key_limit_micros: int | None = None  # the key's credit limit, if it has one
    key_models: tuple[str, ...] | None = None  # the key's model allow-list, if it has one
    is_admin: bool = False  # known for sessions only: the console is a browser's, never a key's

    @property
    def credential(self) -> str:
        """'api_key' or 'session'."""
        return "api_key" if self.api_key_id is not None else "session"


@dataclass(frozen=True)
class SessionGrant:
    """A new session token (shown once) and when it expires at the latest."""

    token: str
    session_id: int
    account_id: int
    expires_at: datetime


@dataclass(frozen=True)
class Registration:
    """A new account with its first API key and session (secrets shown once)."""

    account_id: int
    email: str
    api_key: str
    api_key_id: int
    session_token: str
    expires_at: datetime
    balance_micros: int


@dataclass(frozen=True)
class KeyInfo:
    """An API key as listed: never the key itself, only its masked form."""

    id: int
    name: str
    prefix: str
    masked: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    credit_limit_micros: int | None = None
    expires_at: datetime | None = None
    allowed_models: tuple[str, ...] | None = None
    limit_used_micros: int = 0  # settled charges and open holds counted against the limit
    expired: bool = False
    usage: key_limits.KeyUsage = key_limits.KeyUsage()

    @property
    def limit_left_micros(self) -> int | None:
        """What the key may still spend under its limit (None: no limit)."""
        return None if self.credit_limit_micros is None else max(0, self.credit_limit_micros - self.limit_used_micros)

    def to_dict(self) -> dict:
        """JSON-ready form (ISO-8601 UTC times, USD amounts)."""
        out = {name: getattr(self, name) for name in ("id", "name", "prefix", "masked", "revoked", "expired")}
        out["created_at"] = isoformat_utc(self.created_at)
        out["last_used_at"] = isoformat_utc(self.last_used_at)
        out["credit_limit"] = None if self.credit_limit_micros is None else micros_to_usd(self.credit_limit_micros)
        left = self.limit_left_micros
        out["limit_remaining"] = None if left is None else micros_to_usd(left)
        out["expires_at"] = isoformat_utc(self.expires_at)
        out["allowed_models"] = None if self.allowed_models is None else list(self.allowed_models)
        out["usage"] = self.usage.to_dict()
        return out


@dataclass(frozen=True)
class NewKey:
    """A freshly created API key; `key` is the only time the full secret is available."""

    id: int
    name: str
    key: str
    prefix: str
    created_at: datetime


def isoformat_utc(value: datetime | None) -> str | None:
    """A naive-UTC datetime as '2026-01-02T03:04:05Z'."""
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"


def digest(secret: str) -> str:
    """SHA-256 hex of a key or token: what the database stores and looks up by."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def _mask(key: str) -> str:
    # Enough to recognise a key in a list, far too little to guess it (35 of 43 chars hidden).
    return f"{key[:7]}…{key[-4:]}"


def _prefix_of(mask: str) -> str:
    return mask.split("…", 1)[0]


# --- validation -------------------------------------------------------------------------


def normalize_email(raw) -> str:
    """A trimmed, lower-cased email address, or a 400 naming the `email` field."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidRequest("'email' is required and must be a string.", param="email",
                             code="missing_field" if raw is None else "invalid_type")
    email = raw.strip().lower()
    if len(email) > MAX_EMAIL_CHARS or not _EMAIL_SHAPE.match(email):
        raise InvalidRequest("'email' is not a valid email address.", param="email", code="invalid_email")
    return email


def validate_password(password) -> str:
    """The password if acceptable (6+ characters, at most 72 UTF-8 bytes), else a 400."""
    if not isinstance(password, str) or not password:
        raise InvalidRequest("'password' is required and must be a string.", param="password",
                             code="missing_field" if password is None else "invalid_type")
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidRequest(f"'password' must be at least {MIN_PASSWORD_CHARS} characters.",
                             param="password", code="password_too_short")
    if password_too_long(password):
        raise InvalidRequest("'password' must be at most 72 bytes in UTF-8 (bcrypt's limit).",
                             param="password", code="password_too_long")
    return password


def _key_name(name) -> str:
    if name is None:
        return "default"
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("'name' must be a non-empty string.", param="name", code="invalid_type")
    name = name.strip()
    if NUL in name:  # PostgreSQL refuses it in text
        raise InvalidRequest("'name' must not contain a NUL character (U+0000).", param="name", code="nul_character")
    if len(name) > MAX_KEY_NAME_CHARS:
        raise InvalidRequest(f"'name' is longer than {MAX_KEY_NAME_CHARS} characters.", param="name")
    return name


# --- registration and sessions -----------------------------------------------------------


# Sign-ups are counted over a sliding hour made of 5-minute buckets: a fixed clock hour let twice
# the allowance through around its turn.
SIGNUP_SPAN_SECONDS, SIGNUP_BUCKET_SECONDS = 3600, 300


def signup_network(client_ip: str) -> str:
    """What one sign-up allowance covers: an IPv4 address, an IPv6 /64 (what one subscriber gets),
    or the loopback as a whole (every 127.x and ::1 is this machine). An address given with a port
    or brackets counts without them; one that is not an address shares one allowance with all such."""
    text = client_ip.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]  # [v6] or [v6]:port
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # v4:port
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # without an IPv6 zone id
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _signup_refused(count: counters.Count, now: datetime, whom: str) -> RateLimited:
    wait = count.retry_after(_epoch(now))
    return RateLimited(f"Too many sign-ups {whom}. Try again in {wait} seconds.",
                       headers={"Retry-After": str(wait)}, code="signup_throttled")


def _signup_limits(settings, client_ip: str) -> list[tuple[str, int, str]]:
    """(counter key, allowance per sliding hour, whom a refusal names) for one sign-up."""
    return [(f"signup:net:{signup_network(client_ip)}", settings.signup_max_per_hour, "from this network"),
            ("signup:all", settings.signup_max_global_per_hour, "right now")]


def _check_signups(store, limits, now: datetime, *, count_this_one: bool) -> None:
    """Refuse (429) a sign-up over any allowance; with count_this_one, count it first."""
    at = _epoch(now)
    for key, allowance, whom in limits:
        if count_this_one:
            store.hit(key, SIGNUP_BUCKET_SECONDS, now=at)
        count = store.total(key, SIGNUP_BUCKET_SECONDS, SIGNUP_SPAN_SECONDS, now=at)
        if count.count > allowance - (0 if count_this_one else 1):
            if key == "signup:all":  # everyone is refused now: someone should look
                log.warning("sign-ups refused for everyone: %d in the last hour", count.count)
            raise _signup_refused(count, now, whom)


def register(email: str, password: str, settings, *, client_ip: str = "",
             now: datetime | None = None) -> Registration:
    """Create an account with its signup credit, first API key and a session, in one transaction.

    At most `settings.signup_max_per_hour` sign-ups per network (an IPv4 address, an IPv6 /64) and
    `settings.signup_max_global_per_hour` in all, over a sliding hour (429 beyond); callers that
    pass no address, or none that parses, share one network's allowance.
    """
    now = now or utcnow()
    store, limits = counters.backend(settings), _signup_limits(settings, client_ip)
    _check_signups(store, limits, now, count_this_one=False)  # early: no hashing for a throttled network
    email = normalize_email(email)
    validate_password(password)
    if Account.select().where(Account.email == email).exists():
        raise Conflict("An account with this email already exists.", param="email", code="email_taken")
    # Counted before the bcrypt hash, each hit atomic, so concurrent sign-ups cannot overshoot.
    _check_signups(store, limits, now, count_this_one=True)
    password_hash = hash_password(password, settings.bcrypt_rounds)  # slow: never inside the txn
    key = _new_secret(KEY_PREFIX)
    try:
        with group_commit.lone_transaction() as outcome:
            account = Account.create(email=email, password_hash=password_hash, created_at=now)
            credit = _grant_signup_credit(account.id, settings)
            api_key = ApiKey.create(account=account.id, name="default", key_hash=digest(key),
                                    prefix=_mask(key), created_at=now)
            grant = _create_session(account.id, settings, now)
            # A lost COMMIT answer: the account is there if its first key is, credit and all.
            outcome.landed = ApiKey.select().where(ApiKey.id == api_key.id).exists
    except IntegrityError as exc:  # a concurrent sign-up with the same email won the race
        raise Conflict("An account with this email already exists.", param="email",
                       code="email_taken") from exc
    return Registration(account.id, email, key, api_key.id, grant.token, grant.expires_at, credit)


def _grant_signup_credit(account_id: int, settings) -> int:
    """Credit a new account (call inside the registration transaction); returns micro-dollars."""
    amount = max(0, usd_to_micros(settings.signup_credit_usd))
    ledger.grant_signup_credit(account_id, amount)  # joins our transaction (no savepoint)
    return amount


def _create_session(account_id: int, settings, now: datetime) -> SessionGrant:
    token = _new_secret(SESSION_PREFIX)
    expires_at = now + timedelta(hours=settings.session_max_hours)
    row = SessionToken.create(account=account_id, token_hash=digest(token), created_at=now,
                              last_seen_at=now, expires_at=expires_at)
    return SessionGrant(token, row.id, account_id, expires_at)


def _epoch(now: datetime) -> float:
    return now.replace(tzinfo=timezone.utc).timestamp()


def _throttle_rules(email: str, client_ip: str, settings) -> list[tuple[str, int, int]]:
    """(counter key, max failures, window seconds): per account+IP, per account, per IP."""
    who = digest(email)[:32]  # emails stay out of the counter table
    limit = settings.login_max_failures
    return [
        (f"login-fail:acct-ip:{who}:{client_ip}", limit, 900),
        # Many IPs against one account: bounded, but a victim is never locked out for good.
        (f"login-fail:acct:{who}", limit * 10, 900),
        (f"login-fail:ip:{client_ip}", limit * 20, 3600),
    ]


def login(email: str, password: str, settings, *, client_ip: str = "",
          now: datetime | None = None) -> SessionGrant:
    """A new session for valid credentials; one 401 for any mismatch; 429 when throttled."""
    now = now or utcnow()
    email = email.strip().lower() if isinstance(email, str) else ""
    if len(email) > MAX_EMAIL_CHARS or not _EMAIL_SHAPE.match(email):
        # No account has it, and it never reaches the database: PostgreSQL refuses a NUL in text.
        email = ""
    password = password if isinstance(password, str) else ""
    rules = _throttle_rules(email, client_ip, settings)
    store = counters.backend(settings)
    for key, limit, window in rules:
        count = store.peek(key, window, now=_epoch(now))
        if count.count >= limit:
            wait = count.retry_after(_epoch(now))
            raise RateLimited(f"Too many failed login attempts. Try again in {wait} seconds.",
                              headers={"Retry-After": str(wait)}, code="login_throttled")
    account = Account.get_or_none(Account.email == email) if email else None
    if account is None:
        check_password(password, dummy_hash(settings.bcrypt_rounds))  # same cost as a real check
        ok = False
    else:
        ok = check_password(password, account.password_hash)
    if not ok:
        for key, _limit, window in rules:
            store.hit(key, window, now=_epoch(now))
        raise AuthenticationFailed(LOGIN_FAILED, code="invalid_credentials")
    if account.suspended_at is not None:  # only after the password: a wrong one says nothing of the account
        raise AccountSuspended(SUSPENDED)
    new_hash = hash_password(password, settings.bcrypt_rounds) \
        if needs_rehash(account.password_hash, settings.bcrypt_rounds) else None
    with write_transaction():
        if new_hash:  # the configured cost changed since this password was stored
            Account.update(password_hash=new_hash).where(Account.id == account.id).execute()
        return _create_session(account.id, settings, now)


def logout(token: str, *, now: datetime | None = None) -> None:
    """End the session a `ks-` token names (no-op for API keys and unknown tokens)."""
    if not isinstance(token, str) or not token.startswith(SESSION_PREFIX):
        return
    (SessionToken.update(revoked_at=now or utcnow())
     .where((SessionToken.token_hash == digest(token)) & SessionToken.revoked_at.is_null())
     .execute())


# --- authentication -------------------------------------------------------------------------


def _invalid() -> AuthenticationFailed:
    return AuthenticationFailed(INVALID_CREDENTIAL, headers={"WWW-Authenticate": "Bearer"})


def authenticate(token: str, settings=None, *, now: datetime | None = None) -> Principal:
    """The principal for a `ky-` key or `ks-` session token, or AuthenticationFailed (401)."""
    if not isinstance(token, str) or not _CREDENTIAL_SHAPE.match(token):
        raise _invalid()  # malformed: no database query at all
    now = now or utcnow()
    hashed = digest(token)
    if token.startswith(KEY_PREFIX):
        return _authenticate_key(hashed, now)
    if settings is None:
        from kyma.runtime import runtime

        settings = runtime().settings
    return _authenticate_session(hashed, settings, now)


# The account's suspension comes along in the same row: refusing a suspended account costs no query.
_KEY_LOOKUP = ('SELECT k.id, k.key_hash, k.revoked_at, k.last_used_at, a.id, a.email, a.tier, k.name, '
               'k.expires_at, k.credit_limit_micros, k.allowed_models, a.suspended_at '
               'FROM apikey k JOIN account a ON a.id = k.account_id WHERE k.key_hash = ?')


def _key_row(hashed: str) -> tuple | None:
    rows = query(_KEY_LOOKUP, hashed)
    return tuple(rows[0]) if rows else None


def _authenticate_key(hashed: str, now: datetime) -> Principal:
    # The per-request hot path: one indexed read in raw SQL (peewee's query building costs more),
    # which brings the key's limits along; with Redis, a row this worker read is kept while no key
    # or account has changed anywhere (key_cache).
    row = key_cache.fetch(hashed, lambda: _key_row(hashed))
    if row is None:
        raise _invalid()
    (key_id, key_hash, revoked_at, last_used_at, account_id, email, tier, name, expires_at, limit, models,
     suspended_at) = row
    if not hmac.compare_digest(key_hash, hashed) or revoked_at is not None:
        raise _invalid()
    if suspended_at is not None:
        raise AccountSuspended(SUSPENDED)
    if expires_at is not None and now >= as_datetime(expires_at):
        raise AuthenticationFailed(key_limits.expired(as_datetime(expires_at)), code="expired_api_key",
                                   headers={"WWW-Authenticate": "Bearer"})
    if _touch(ApiKey, ApiKey.last_used_at, key_id, as_datetime(last_used_at), now):
        key_cache.replace(hashed, row[:3] + (now,) + row[4:])  # else every request would stamp it again
    return Principal(account_id, email, tier, api_key_id=key_id, key_name=name, key_limit_micros=limit,
                     key_models=key_limits.load_models(models))


def _authenticate_session(hashed: str, settings, now: datetime) -> Principal:
    row = SessionToken.select(SessionToken, Account).join(Account).where(SessionToken.token_hash == hashed).first()
    if row is None or not hmac.compare_digest(row.token_hash, hashed) or row.revoked_at is not None:
        raise _invalid()
    idle = timedelta(minutes=settings.session_idle_minutes)
    if now >= row.expires_at or now - row.last_seen_at > idle:
        raise _invalid()
    if row.account.suspended_at is not None:
        raise AccountSuspended(SUSPENDED)
    _touch(SessionToken, SessionToken.last_seen_at, row.id, row.last_seen_at, now)
    return Principal(row.account.id, row.account.email, row.account.tier, session_id=row.id,
                     is_admin=bool(row.account.is_admin))


def _touch(model, field, row_id: int, last: datetime | None, now: datetime) -> bool:
    """Stamp last use, at most once per TOUCH_EVERY; a busy database skips the stamp, not the request.
    True when it stamped."""
    if last is not None and now - last < TOUCH_EVERY:
        return False
    try:
        model.update({field: now}).where(model.id == row_id).execute()
    except OperationalError as exc:
        log.warning("skipped last-use stamp on %s %s: %s", model.__name__, row_id, exc)
        return False
    return True


# --- account and keys -------------------------------------------------------------------------


def me(principal: Principal) -> dict:
    """The caller's account, balance and (masked) keys."""
    account = Account.get_by_id(principal.account_id)
    return {
        "user_id": str(account.id),
        "email": account.email,
        "balance": micros_to_usd(account.balance_micros),
        "currency": "USD",
        "tier": account.tier,
        "lifetime_purchased": micros_to_usd(account.lifetime_purchased_micros),
        "created_at": isoformat_utc(account.created_at),
        "credential": principal.credential,
        "keys": [k.to_dict() for k in list_keys(account.id)],
    }


def list_keys(account_id: int, *, now: datetime | None = None) -> list[KeyInfo]:
    """The account's API keys, oldest first, revoked ones flagged, with limits and spend; never the secret."""
    now = now or utcnow()
    rows = ApiKey.select().where(ApiKey.account == account_id).order_by(ApiKey.id)
    spend = key_limits.usage(account_id, now)
    return [KeyInfo(r.id, r.name, _prefix_of(r.prefix), r.prefix, r.created_at, r.last_used_at,
                    r.revoked_at is not None, r.credit_limit_micros, r.expires_at,
                    key_limits.load_models(r.allowed_models), (r.spent_micros or 0) + (r.held_micros or 0),
                    r.expires_at is not None and now >= r.expires_at, spend.get(r.id, key_limits.KeyUsage()))
            for r in rows]


# The fields of a key's limits; each may be null (no limit).
LIMIT_FIELDS = ("credit_limit", "expires_at", "allowed_models")


def _limit_columns(limits: dict, catalog) -> dict:
    """The ApiKey columns for the limit fields present in `limits`, each validated (400 naming it)."""
    columns = {}
    if "credit_limit" in limits:
        columns["credit_limit_micros"] = key_limits.parse_credit_limit(limits["credit_limit"])
    if "expires_at" in limits:
        columns["expires_at"] = key_limits.parse_expires_at(limits["expires_at"])
    if "allowed_models" in limits:
        columns["allowed_models"] = key_limits.dump_models(key_limits.parse_allowed_models(limits["allowed_models"],
                                                                                           catalog))
    return columns


def create_key(account_id: int, name=None, *, limits: dict | None = None, catalog=None,
               now: datetime | None = None) -> NewKey:
    """A new API key for the account, with optional limits; the full key is returned here and never again."""
    name = _key_name(name)
    now = now or utcnow()
    columns = _limit_columns(limits or {}, catalog)
    active = ApiKey.select().where((ApiKey.account == account_id) & ApiKey.revoked_at.is_null()).count()
    if active >= MAX_ACTIVE_KEYS:
        # The request is well-formed; the account's state refuses it.
        raise Conflict(f"An account can have at most {MAX_ACTIVE_KEYS} active keys; revoke one first.",
                       code="too_many_keys")
    key = _new_secret(KEY_PREFIX)
    row = ApiKey.create(account=account_id, name=name, key_hash=digest(key), prefix=_mask(key),
                        created_at=now, spent_micros=0, held_micros=0, **columns)
    return NewKey(row.id, name, key, key[:7], row.created_at)


def set_key_limits(account_id: int, key_id: int, limits: dict, catalog, *, now: datetime | None = None) -> KeyInfo:
    """Change the limit fields present in `limits` (null clears one); 404 for another account's key."""
    now = now or utcnow()
    columns = _limit_columns(limits, catalog)
    with write_transaction():
        row = ApiKey.get_or_none((ApiKey.account == account_id) & (ApiKey.id == key_id))
        if row is None:
            raise NotFound(f"No API key with id {key_id}.", param="key_id", code="key_not_found")
        if columns.get("credit_limit_micros") is not None and row.credit_limit_micros is None:
            # Spend is tracked on the key only while it has a limit: start from what the log has charged.
            columns["spent_micros"] = key_limits.spent_by(key_id)
        if columns:
            ApiKey.update(columns).where(ApiKey.id == key_id).execute()
    return next(k for k in list_keys(account_id, now=now) if k.id == key_id)


def revoke_key(account_id: int, key_id: int, *, now: datetime | None = None) -> bool:
    """Revoke one of the account's keys: True if revoked now, False if it already was; 404 otherwise."""
    owned = (ApiKey.account == account_id) & (ApiKey.id == key_id)
    changed = ApiKey.update(revoked_at=now or utcnow()).where(owned & ApiKey.revoked_at.is_null()).execute()
    if changed:
        return True
    if ApiKey.select().where(owned).exists():
        return False
    # Another account's key looks exactly like a missing one.
    raise NotFound(f"No API key with id {key_id}.", param="key_id", code="key_not_found")
