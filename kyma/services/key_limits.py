"""Per-key limits: a credit limit, an expiry and a model allow-list, and each key's spend.

A key with a credit limit keeps its settled charges (spent_micros) and open holds (held_micros) on
its own row, changed in the transaction of the credit hold and of the settlement; the hold is
refused unless spent + held + the new hold stays within the limit, by one conditional UPDATE, so
concurrent requests on any number of workers cannot overspend a key. Keys without limits cost the
request path nothing: their limits come with the key lookup and no key row is written. A limit set
on a key that had none starts from what the request log has charged it; requests in flight at that
moment are not counted against it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from kyma.db import execute, query
from kyma.errors import InsufficientCredits, InvalidRequest, KymaError
from kyma.services.pricing import micros_to_usd, usd_to_micros

MAX_CREDIT_LIMIT_USD = 1_000_000
MAX_ALLOWED_MODELS = 100
RECENT_DAYS = 30


class ModelNotAllowed(KymaError):
    """The key may not use the model asked for (403)."""

    status = 403
    type = "permission_error"
    code = "model_not_allowed"


@dataclass(frozen=True)
class KeyUsage:
    """A key's charges and request count, in all and over the last 30 days."""

    spend_micros: int = 0
    requests: int = 0
    spend_30d_micros: int = 0
    requests_30d: int = 0

    def to_dict(self) -> dict:
        """JSON-ready form (USD)."""
        return {"spend": micros_to_usd(self.spend_micros), "requests": self.requests,
                "spend_30d": micros_to_usd(self.spend_30d_micros), "requests_30d": self.requests_30d}


# --- validation -------------------------------------------------------------------------


def parse_credit_limit(value) -> int | None:
    """A credit limit in USD (a number, or null for none) as micro-dollars, else a 400."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest("'credit_limit' must be a number of US dollars, or null for no limit.",
                             param="credit_limit", code="invalid_type")
    if value < 0 or value > MAX_CREDIT_LIMIT_USD:
        raise InvalidRequest(f"'credit_limit' must be between 0 and {MAX_CREDIT_LIMIT_USD} US dollars.",
                             param="credit_limit", code="invalid_credit_limit")
    return usd_to_micros(value)


# RFC 3339 and the ISO 8601 forms a form or a shell gives: a date, then optionally a time and an offset.
_WHEN = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
                   r"([Zz]|[+-]\d{2}:?\d{2})?")


def parse_expires_at(value) -> datetime | None:
    """An ISO 8601 time (UTC when it names no offset) as naive UTC, null for none, else a 400.

    A time already past is accepted: the key is expired from then on, until the expiry is changed.
    """
    if value is None:
        return None
    match = _WHEN.fullmatch(value.strip()) if isinstance(value, str) else None
    try:
        if match is None:
            raise ValueError
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        when = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                        min(int(second or 0), 59), int((fraction or "0")[:6].ljust(6, "0")))  # a leap second is :59
        if offset and offset not in "Zz":
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            when -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    except (ValueError, OverflowError):
        raise InvalidRequest("'expires_at' must be an ISO 8601 date and time, e.g. 2027-01-31T00:00:00Z, "
                             "or null for no expiry.", param="expires_at", code="invalid_expires_at") from None
    return when


def parse_allowed_models(value, catalog) -> list[str] | None:
    """A non-empty list of catalog ids or aliases (null: every model), else a 400 naming the field."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidRequest("'allowed_models' must be an array of model ids, or null for every model.",
                             param="allowed_models", code="invalid_type")
    names = list(dict.fromkeys(v.strip() for v in value))
    if not names or len(names) > MAX_ALLOWED_MODELS:
        raise InvalidRequest(f"'allowed_models' must name 1 to {MAX_ALLOWED_MODELS} models (null allows every "
                             "model).", param="allowed_models", code="invalid_allowed_models")
    unknown = [n for n in names if catalog.get(n) is None]
    if unknown:
        raise InvalidRequest(f"'allowed_models' names unknown models: {', '.join(unknown)}. GET /v1/models "
                             "lists the models and their aliases.", param="allowed_models", code="model_not_found")
    return names


def dump_models(names: list[str] | None) -> str | None:
    """The allow-list as stored (JSON text)."""
    return None if names is None else json.dumps(names)


def load_models(text: str | None) -> tuple[str, ...] | None:
    """The stored allow-list."""
    return None if text is None else tuple(json.loads(text))


# --- the request path ---------------------------------------------------------------------


def allowed_ids(principal, catalog) -> frozenset[str] | None:
    """The catalog ids the key may use (aliases resolved), or None for every model."""
    if principal.key_models is None:
        return None
    return frozenset(m.id for m in (catalog.get(n) for n in principal.key_models) if m is not None)


def check_model(principal, catalog, model) -> frozenset[str] | None:
    """403 unless the key may use `model` (a claude-* name counts as the model it maps to)."""
    allowed = allowed_ids(principal, catalog)
    if allowed is not None and model.id not in allowed:
        raise ModelNotAllowed(f"The API key '{principal.key_name}' may not use the model '{model.id}'; it is "
                              f"limited to: {', '.join(principal.key_models)}.", param="model")
    return allowed


def within(allowed: frozenset[str] | None, candidates: list) -> list:
    """The candidates whose model the key may use: no fallback outside its allow-list."""
    return candidates if allowed is None else [c for c in candidates if c.model.id in allowed]


_RESERVE = ('UPDATE apikey SET held_micros = COALESCE(held_micros, 0) + ? WHERE id = ? AND '
            '(credit_limit_micros IS NULL OR COALESCE(spent_micros, 0) + COALESCE(held_micros, 0) + ? '
            '<= credit_limit_micros)')
_SETTLE = ('UPDATE apikey SET held_micros = COALESCE(held_micros, 0) - ?, '
           'spent_micros = COALESCE(spent_micros, 0) + ? WHERE id = ?')


def reserve(principal, amount: int) -> bool:
    """Count a hold against the key's limit; False (nothing written) when it would pass the limit.

    Call inside the hold's write transaction; no query for a key without a limit.
    """
    if principal.key_limit_micros is None:
        return True
    return execute(_RESERVE, amount, principal.api_key_id, amount) == 1


def settle(principal, held: int, charged: int) -> None:
    """Move a settled request's hold to the key's spend (inside the settlement's transaction)."""
    if principal.key_limit_micros is not None:
        execute(_SETTLE, held, charged, principal.api_key_id)


def limited_key(principal) -> int | None:
    """The key whose credit limit counts this caller's holds, or None (no limit: no key row is written)."""
    return principal.api_key_id if principal.key_limit_micros is not None else None


def hold_note(principal) -> str:
    """The hold entry's note: which limited key counts the hold, for the reaper."""
    key = limited_key(principal)
    return "" if key is None else f"key {key}"


def counted_hold(request_id: str) -> tuple[int, int] | None:
    """(key id, hold as the negative amount of its entry) for a hold a limited key counts; None for another."""
    rows = query("SELECT note, amount_micros FROM ledgerentry WHERE idempotency_key = ?", f"{request_id}:hold")
    if rows and rows[0][0].startswith("key "):
        return int(rows[0][0][4:]), rows[0][1]
    return None


def forget_hold(request_id: str) -> None:
    """A released hold no longer counts against its key's limit (inside the release's transaction)."""
    counted = counted_hold(request_id)
    if counted is not None:
        uncount(counted)


def uncount(counted: tuple[int, int]) -> None:
    """Take a hold counted_hold found off its key's limit (inside the release's transaction)."""
    key, amount = counted
    execute("UPDATE apikey SET held_micros = COALESCE(held_micros, 0) + ? WHERE id = ?", amount, key)


def refusal(principal, hold: int, headers: dict) -> InsufficientCredits:
    """The 402 for a hold that would take the key past its credit limit."""
    rows = query("SELECT credit_limit_micros, COALESCE(spent_micros, 0) + COALESCE(held_micros, 0) "
                 "FROM apikey WHERE id = ?", principal.api_key_id)
    limit, used = rows[0] if rows and rows[0][0] is not None else (principal.key_limit_micros, 0)
    left = max(0, limit - used)
    return InsufficientCredits(
        f"The API key '{principal.key_name}' has reached its credit limit of ${micros_to_usd(limit):.2f}: this "
        f"request may cost up to ${micros_to_usd(hold):.6f} and the key has ${micros_to_usd(left):.6f} left. "
        "Raise the key's limit or use another key.", code="key_limit_reached", headers=headers)


def expired(expires_at: datetime) -> str:
    """The 401 message for a key past its expiry."""
    return (f"This API key expired at {expires_at.replace(microsecond=0).isoformat()}Z. Create a new key, or "
            "extend this one's expiry in the dashboard.")


# --- spend -------------------------------------------------------------------------------------


def spent_by(key_id: int) -> int:
    """The key's charges as the request log has them."""
    rows = query("SELECT COALESCE(SUM(cost_micros), 0) FROM requestlog WHERE api_key_id = ?", key_id)
    return int(rows[0][0] or 0)


def usage(account_id: int, now: datetime) -> dict[int, KeyUsage]:
    """Each of the account's keys' spend and requests, in all and over the last 30 days."""
    since = now - timedelta(days=RECENT_DAYS)
    rows = query("SELECT api_key_id, COALESCE(SUM(cost_micros), 0), COUNT(*), "
                 "COALESCE(SUM(CASE WHEN created_at >= ? THEN cost_micros ELSE 0 END), 0), "
                 "COALESCE(SUM(CASE WHEN created_at >= ? THEN 1 ELSE 0 END), 0) "
                 "FROM requestlog WHERE account_id = ? AND api_key_id IS NOT NULL GROUP BY api_key_id",
                 since, since, account_id)
    return {r[0]: KeyUsage(int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}

