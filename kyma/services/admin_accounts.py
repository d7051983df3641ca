"""What the admin console does to accounts: find, inspect, grant credit, set a tier, suspend, reinstate.

Every change is audited in the same transaction as the change itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from peewee import IntegrityError, fn

from kyma.db import as_datetime, write_transaction
from kyma.errors import InvalidRequest, NotFound
from kyma.models import Account, ApiKey, RequestLog, SessionToken, utcnow
from kyma.services import accounts, audit, group_commit, ledger
from kyma.services.periods import Period
from kyma.services.tiers import TierLadder

SEARCH_LIMIT = 50


@dataclass(frozen=True)
class AccountDetail:
    """One account as the console shows it."""

    account: Account
    balance: ledger.Balance
    period: Period
    spend_micros: int
    requests: int
    keys: list
    last_activity: datetime | None

    @property
    def suspended(self) -> bool:
        return self.account.suspended_at is not None


def search(text: str = "", limit: int = SEARCH_LIMIT) -> list[Account]:
    """Accounts whose email contains `text` (all when empty), newest first."""
    query = Account.select()
    text = text.strip().lower()
    if text:
        query = query.where(fn.LOWER(Account.email).contains(text))
    return list(query.order_by(Account.id.desc()).limit(limit))


def _get(account_id: int) -> Account:
    account = Account.get_or_none(Account.id == account_id)
    if account is None:
        raise NotFound(f"No account {account_id}.")
    return account


def detail(account_id: int, period: Period, now: datetime | None = None) -> AccountDetail:
    """Balance, tier, spend and requests over the period, keys and the last activity of any kind."""
    account = _get(account_id)
    since = period.start(now)
    spend, count = (RequestLog.select(fn.COALESCE(fn.SUM(RequestLog.cost_micros), 0), fn.COUNT(RequestLog.id))
                    .where((RequestLog.account == account_id) & (RequestLog.created_at >= since)).tuples().get())
    stamps = [RequestLog.select(fn.MAX(RequestLog.created_at)).where(RequestLog.account == account_id).scalar(),
              ApiKey.select(fn.MAX(ApiKey.last_used_at)).where(ApiKey.account == account_id).scalar(),
              SessionToken.select(fn.MAX(SessionToken.last_seen_at)).where(SessionToken.account == account_id).scalar()]
    last = max((s for s in map(as_datetime, stamps) if s), default=None)  # MAX() of a datetime may come back as text
    return AccountDetail(account, ledger.balance(account_id), period, int(spend or 0), int(count or 0),
                         accounts.list_keys(account_id), last)


def grant_credit(actor: str, account_id: int, usd: str, idempotency_key: str, note: str = "",
                 ladder: TierLadder | None = None) -> ledger.CreditResult:
    """A grant through the ledger, as `flask credits add --grant`; the same idempotency key grants once."""
    if not idempotency_key or len(idempotency_key) > 100:
        raise InvalidRequest("The form lacks its idempotency key; reload the page and try again.")
    try:
        amount = float(usd)
    except (TypeError, ValueError):
        raise InvalidRequest(f"Not an amount: {usd!r}.", param="usd") from None
    if not 0 < amount <= 100_000:
        raise InvalidRequest("A grant must be more than $0 and at most $100,000.", param="usd")
    account = _get(account_id)
    key, note = f"admin:{idempotency_key}", (note or f"granted by {actor}")[:200]
    try:
        with group_commit.lone_transaction() as outcome:
            before = Account.get_by_id(account_id).balance_micros
            result = ledger.add_credit(account_id, usd, kind="grant", idempotency_key=key, note=note, ladder=ladder)
            outcome.landed = functools.partial(ledger.entry_landed, result.entry_id)
            if not result.replayed:
                audit.record(actor, "credit.grant", account.email, {"balance_micros": before},
                             {"balance_micros": result.balance_micros, "granted_micros": result.amount_micros,
                              "entry_id": result.entry_id, "note": note})
    except IntegrityError:  # a concurrent double submit won: this one replays its result
        result = ledger.add_credit(account_id, usd, kind="grant", idempotency_key=key, note=note, ladder=ladder)
    return result


def set_tier(actor: str, account_id: int, level: int, ladder: TierLadder) -> bool:
    """Set the account's tier to a level of the ladder (above or below what purchases earned); True if changed."""
    if level not in {t.level for t in ladder.tiers}:
        raise InvalidRequest(f"No tier {level}; the ladder has {', '.join(str(t.level) for t in ladder.tiers)}.",
                             param="tier")
    with write_transaction():
        account = _get(account_id)
        if account.tier == level:
            return False
        Account.update(tier=level).where(Account.id == account_id).execute()
        audit.record(actor, "account.tier", account.email, {"tier": account.tier}, {"tier": level})
    return True


def set_suspended(actor: str, account_id: int, suspended: bool, reason: str = "") -> bool:
    """Suspend (its keys and sessions get 403 from the next request) or reinstate; True if changed.

    Nothing of the account is deleted: keys, sessions, credit and history stay as they were.
    """
    now = utcnow()
    with write_transaction():
        account = _get(account_id)
        if (account.suspended_at is not None) == suspended:
            return False
        Account.update(suspended_at=now if suspended else None).where(Account.id == account_id).execute()
        audit.record(actor, "account.suspend" if suspended else "account.reinstate", account.email,
                     {"suspended_at": account.suspended_at}, {"suspended_at": now if suspended else None,
                                                              "reason": reason[:200]})
    return True
