"""The credit ledger: append-only entries in integer micro-dollars, holds, settlement and top-ups.

Account.balance_micros is the cached sum of the account's LedgerEntry rows; every function here
changes both in one transaction. Debits are one conditional UPDATE (`balance >= x`), never a
read-then-write in Python, so concurrent requests on any number of workers cannot overspend.

A request's life: place_hold (debit the worst case) → settle_hold (give the hold back, debit the
actual cost) or release_hold (failed: give it back). A hold whose worker died is released by
reap_expired_holds, run by the reaper greenlet and by `flask --app app ledger reap`.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from greenlet import getcurrent
from peewee import IntegrityError, fn

from kyma.db import connected, database, execute, is_sqlite_db, write_transaction
from kyma.errors import Conflict, InvalidRequest, NotFound
from kyma.models import Account, Hold, LedgerEntry, utcnow
from kyma.services import group_commit, key_limits
from kyma.services.owners import OWNER_LENGTH, owner_is_dead, worker_identity
from kyma.services.pricing import usd_to_micros
from kyma.services.row_locks import RowLocks
from kyma.services.tiers import TierLadder

log = logging.getLogger(__name__)

DEFAULT_HOLD_TTL_SECONDS = 900
CREDIT_KINDS = ("purchase", "grant", "adjustment", "signup")


@dataclass(frozen=True)
class Balance:
    """An account's money as the API reports it (micro-dollars)."""

    account_id: int
    balance_micros: int
    held_micros: int
    lifetime_purchased_micros: int
    tier: int


@dataclass(frozen=True)
class CreditResult:
    """The outcome of add_credit; `replayed` when the idempotency key had already been used."""

    account_id: int
    entry_id: int
    amount_micros: int
    balance_micros: int
    tier: int
    replayed: bool = False


@dataclass(frozen=True)
class Mismatch:
    """One account that fails a ledger invariant, and why."""

    account_id: int
    email: str
    reason: str

    def __str__(self) -> str:
        return f"account {self.account_id} <{self.email}>: {self.reason}"


def _hold_ttl(ttl_seconds: int | None) -> int:
    if ttl_seconds is not None:
        return ttl_seconds
    from flask import has_app_context

    if has_app_context():
        from kyma.runtime import runtime

        return runtime().settings.hold_ttl_seconds
    return DEFAULT_HOLD_TTL_SECONDS


@dataclass(frozen=True)
class _Statements:
    """The hot path's SQL text for one parameter style (`?` SQLite, `%s` PostgreSQL)."""

    debit: str  # conditional: only when the balance covers it
    add: str
    entry: str  # one ledger entry, RETURNING its id
    two_entries: str  # a settle's release + usage, one statement
    hold: str
    close_hold: str  # exactly once: only an open hold, RETURNING its account and amount
    debit_and_hold: str | None  # PostgreSQL: the debit and both inserts as one statement (a CTE)
    close_and_enter: str | None  # PostgreSQL: close the hold and add its release and usage entries, one statement


ENTRY_COLUMNS = '"account_id", "kind", "amount_micros", "request_id", "idempotency_key", "note", "created_at"'


def overshoot_note(cost: str) -> str:
    """SQL for a usage entry's note next to its closed hold's "amount_micros": says by how much `cost` (an
    SQL expression) went over the hold, else empty. settle_hold writes the same note."""
    return (f'CASE WHEN {cost} > "amount_micros" THEN \'overshoot \' || ({cost} - "amount_micros") || '
            '\' micros over the hold\' ELSE \'\' END')


@functools.cache
def _statements(param: str) -> _Statements:
    """Build the statements once per backend: building them per call cost more than running them."""
    def text(sql: str) -> str:
        return sql.replace("?", param)

    entry_row = "(?, ?, ?, ?, ?, ?, ?)"
    return _Statements(
        debit=text('UPDATE "account" SET "balance_micros" = "balance_micros" - ? '
                   'WHERE "id" = ? AND "balance_micros" >= ?'),
        add=text('UPDATE "account" SET "balance_micros" = "balance_micros" + ? WHERE "id" = ?'),
        entry=text(f'INSERT INTO "ledgerentry" ({ENTRY_COLUMNS}) VALUES {entry_row} RETURNING "id"'),
        two_entries=text(f'INSERT INTO "ledgerentry" ({ENTRY_COLUMNS}) VALUES {entry_row}, {entry_row}'),
        hold=text('INSERT INTO "hold" ("account_id", "request_id", "amount_micros", "owner", "created_at", '
                  '"expires_at") VALUES (?, ?, ?, ?, ?, ?)'),
        close_hold=text('UPDATE "hold" SET "closed_at" = ? WHERE "request_id" = ? AND "closed_at" IS NULL '
                        'RETURNING "account_id", "amount_micros"'),
        # Every data-modifying part of a WITH runs once, whether read or not; the inserts select
        # from the debit, so a refused debit inserts nothing.
        debit_and_hold=None if param == "?" else text(
            'WITH "debit" AS (UPDATE "account" SET "balance_micros" = "balance_micros" - ? '
            'WHERE "id" = ? AND "balance_micros" >= ? RETURNING "id"), '
            f'"entry" AS (INSERT INTO "ledgerentry" ({ENTRY_COLUMNS}) '
            'SELECT "id", \'hold\', ?, ?, ?, ?, ? FROM "debit"), '
            '"held" AS (INSERT INTO "hold" ("account_id", "request_id", "amount_micros", "owner", "created_at", '
            '"expires_at") SELECT "id", ?, ?, ?, ?, ? FROM "debit") '
            'SELECT COUNT(*) FROM "debit"'),
        close_and_enter=None if param == "?" else text(
            'WITH "closed" AS (UPDATE "hold" SET "closed_at" = ? WHERE "request_id" = ? AND "closed_at" IS NULL '
            'RETURNING "account_id", "amount_micros"), '
            f'"entries" AS (INSERT INTO "ledgerentry" ({ENTRY_COLUMNS}) '
            'SELECT "account_id", \'release\', "amount_micros", ?, ?, \'\', ? FROM "closed" UNION ALL '
            f'SELECT "account_id", \'usage\', -?::bigint, ?, ?, {overshoot_note("?::bigint")}, ? '
            'FROM "closed") '
            'SELECT "account_id", "amount_micros" FROM "closed"'),
    )


def _sql() -> _Statements:
    return _statements(database.obj.param)


def _entry(account_id: int, kind: str, amount: int, *, request_id: str | None = None,
           key: str | None = None, note: str = "") -> int:
    """Append one ledger entry; returns its id."""
    # Datetimes go to the driver as datetime objects, as peewee sends them, so they are stored alike.
    cursor = database.obj.execute_sql(_sql().entry, (account_id, kind, amount, request_id, key, note[:200], utcnow()))
    return cursor.fetchone()[0]


# Balance changes a group commit defers: (owner greenlet, {account: delta}). Keyed by the greenlet
# itself, not only by threading.local, so that on PostgreSQL, where the group's flusher yields on
# I/O, no other greenlet's settlement can land in its sums, whatever the import order was.
_deferred = threading.local()


def _deferring() -> dict | None:
    owner_and_deltas = getattr(_deferred, "deltas", None)
    if owner_and_deltas is not None and owner_and_deltas[0] is getcurrent():
        return owner_and_deltas[1]
    return None


def _add_to_balance(account_id: int, delta: int) -> None:
    pending = _deferring()
    if pending is not None and delta >= 0:
        pending[account_id] = pending.get(account_id, 0) + delta
        return
    # A net debit (a settlement over its hold) is written now: a hold admitted later in the same group
    # must check the balance without it. A deferred credit only makes such a hold see less than there is.
    database.obj.execute_sql(_sql().add, (delta, account_id))


@contextmanager
def deferred_balances():
    """Inside a write transaction: credits to balances (settle, release) are summed per account and
    written last, one UPDATE each, so an account's row gets one new version per transaction, just
    before its commit. Debits are never deferred: neither holds (conditional)
    nor a settlement's overshoot, which a hold later in the transaction must see."""
    if _deferring() is not None:  # an outer group already defers
        yield
        return
    deltas: dict[int, int] = {}
    _deferred.deltas = (getcurrent(), deltas)
    try:
        yield
        _deferred.deltas = None
        for account_id in sorted(deltas):  # a group committer locked these rows first (row_locks)
            if deltas[account_id]:
                database.obj.execute_sql(_sql().add, (deltas[account_id], account_id))
    finally:
        _deferred.deltas = None


def place_hold(account_id: int, request_id: str, amount_micros: int, *, owner: str = "",
               ttl_seconds: int | None = None, note: str = "") -> bool:
    """Reserve `amount_micros` for a request; False (nothing written) when the balance can't cover it.

    `owner` defaults to this process (worker_identity()); the TTL to settings.hold_ttl_seconds.
    Callable inside an outer transaction.
    """
    if amount_micros < 0:
        raise ValueError("a hold cannot be negative")
    now = utcnow()
    expires_at = now + timedelta(seconds=_hold_ttl(ttl_seconds))
    db, sql = database.obj, _sql()
    owner = owner or worker_identity()
    if len(owner) > OWNER_LENGTH:  # cut, it could name another worker, whose holds a reaper may release
        raise ValueError(f"a hold's owner is {OWNER_LENGTH} characters at most")
    if sql.debit_and_hold is not None:
        # One statement: outside a transaction it commits by itself, so an account's row is locked
        # for one statement, not across round trips and a commit (a team's agents share one account).
        rows = db.execute_sql(sql.debit_and_hold, (
            amount_micros, account_id, amount_micros,
            -amount_micros, request_id, f"{request_id}:hold", note[:200], now,
            request_id, amount_micros, owner, now, expires_at)).fetchall()
        return rows[0][0] == 1
    with write_transaction():
        if not db.rows_affected(db.execute_sql(sql.debit, (amount_micros, account_id, amount_micros))):
            return False
        _entry(account_id, "hold", -amount_micros, request_id=request_id, key=f"{request_id}:hold", note=note)
        db.execute_sql(sql.hold, (account_id, request_id, amount_micros, owner, now, expires_at))
    return True


@dataclass(frozen=True)
class HoldRequest:
    """One request's hold, as data: what place_holds takes."""

    account_id: int
    request_id: str
    amount_micros: int
    ttl_seconds: int
    note: str = ""


def place_holds(requests: list[HoldRequest]) -> list[bool]:
    """PostgreSQL: place many holds in one round trip and one commit; for each, whether it was placed.

    Each is place_hold's one-statement hold, so each is refused alone when the balance no longer
    covers it, in arrival order. The statements and their BEGIN and COMMIT go out pipelined (psycopg
    sends them all, then reads every answer); inside an open transaction they join it. A lone hold
    is its statement alone, which commits by itself.
    """
    if len(requests) == 1:
        r = requests[0]
        return [place_hold(r.account_id, r.request_id, r.amount_micros, ttl_seconds=r.ttl_seconds, note=r.note)]
    db, sql = database.obj, _sql()
    owner, now = worker_identity(), utcnow()
    conn = db.connection()
    own = not db.in_transaction()
    cursors = {}
    # Accounts are locked in id order, as every write of several accounts does, so that two workers'
    # batches cannot wait on each other; the sort is stable, so one account's holds keep arrival order.
    order = sorted(range(len(requests)), key=lambda i: requests[i].account_id)
    try:
        with conn.pipeline():
            if own:
                conn.execute("BEGIN")
            for i in order:
                r = requests[i]
                if r.amount_micros < 0:
                    raise ValueError("a hold cannot be negative")
                cursors[i] = conn.execute(sql.debit_and_hold, (
                    r.amount_micros, r.account_id, r.amount_micros,
                    -r.amount_micros, r.request_id, f"{r.request_id}:hold", r.note[:200], now,
                    r.request_id, r.amount_micros, owner, now, now + timedelta(seconds=r.ttl_seconds)))
            if own:
                conn.execute("COMMIT")
    except BaseException:
        if own and not conn.closed:
            conn.rollback()  # a failed statement left the transaction open and aborted
        raise
    return [cursors[i].fetchone()[0] == 1 for i in range(len(requests))]


def _close_hold(request_id: str) -> tuple[int, int] | None:
    """Close the hold if it is still open: (account_id, amount_micros), or None when absent or closed."""
    rows = database.obj.execute_sql(_sql().close_hold, (utcnow(), request_id)).fetchall()
    return (rows[0][0], rows[0][1]) if rows else None


def settle_hold(request_id: str, cost_micros: int) -> int | None:
    """Release the request's hold and debit its actual cost, once; returns micros debited (None when the
    hold was already closed, by an earlier settle or by the reaper).

    Overshoot policy: the true cost is always debited, so the ledger matches the
    provider. When cost > hold the balance may go below zero, by at most the overshoot
    (cost - hold); that usage entry's note starts with "overshoot", and a negative balance makes
    every new hold fail (402) until the account is topped up. Nests inside an outer transaction
    (the pipeline writes its request-log row in the same one).
    """
    if cost_micros < 0:
        raise ValueError("a cost cannot be negative")
    db, sql = database.obj, _sql()
    with write_transaction():
        now = utcnow()
        if sql.close_and_enter is not None:
            # One round trip: inside a group commit the account's row is then only touched at its end.
            rows = db.execute_sql(sql.close_and_enter, (
                now, request_id, request_id, f"{request_id}:release", now,
                cost_micros, request_id, f"{request_id}:usage", cost_micros, cost_micros, now)).fetchall()
            if not rows:
                return None
            account_id, held = rows[0]
        else:
            closed = _close_hold(request_id)
            if closed is None:
                return None
            account_id, held = closed
            overshoot = cost_micros - held
            note = f"overshoot {overshoot} micros over the hold" if overshoot > 0 else ""
            db.execute_sql(sql.two_entries, (
                account_id, "release", held, request_id, f"{request_id}:release", "", now,
                account_id, "usage", -cost_micros, request_id, f"{request_id}:usage", note, now))
        _add_to_balance(account_id, held - cost_micros)
    if cost_micros > held:
        log.warning("request %s cost %d micros over its hold", request_id, cost_micros - held)
    return cost_micros


def extend_hold(request_id: str, ttl_seconds: int) -> None:
    """Push an open hold's expiry to now + ttl (its request is still alive); one autocommitted UPDATE."""
    expires_at = utcnow() + timedelta(seconds=ttl_seconds)
    with connected():
        execute('UPDATE "hold" SET expires_at = ? WHERE request_id = ? AND closed_at IS NULL', expires_at, request_id)


def release_hold(request_id: str, *, note: str = "") -> bool:
    """Give a hold back in full (the request failed: nothing billed); False if it was already closed."""
    with write_transaction():
        closed = _close_hold(request_id)
        if closed is None:
            return False
        account_id, held = closed
        _entry(account_id, "release", held, request_id=request_id, key=f"{request_id}:release", note=note)
        _add_to_balance(account_id, held)
    return True


def reap_expired_holds(now: datetime | None = None) -> int:
    """Release open holds past expires_at, and those of dead workers on this host; returns how many.

    Policy: a reaped hold is released in full (the customer is not billed for a request whose
    worker died), with note "reaped". A late settle after that is a no-op.
    """
    now = now or utcnow()
    host, me = socket.gethostname(), worker_identity()
    # Read them all first: writing while the SELECT is still open fails at once on SQLite
    # ("database is locked") whenever another worker committed meanwhile.
    open_holds = list(Hold.select(Hold.request_id, Hold.account, Hold.owner, Hold.expires_at)
                      .where(Hold.closed_at.is_null()))
    gone = {owner for owner in {hold.owner for hold in open_holds} if owner_is_dead(owner, host, me)}
    reaped = 0
    for hold in open_holds:
        expired = hold.expires_at <= now
        if (expired or hold.owner in gone) and _reap(
                hold, "reaped: expired" if expired else f"reaped: owner {hold.owner} gone"):
            reaped += 1
    if reaped:
        log.info("reaped %d abandoned holds", reaped)
    return reaped


# PostgreSQL: the hold, unless another transaction is closing it (its settlement, which then
# waits for the account this reaper holds: waiting here would close the circle).
_CLAIM_HOLD = 'SELECT "id" FROM "hold" WHERE "request_id" = %s FOR NO KEY UPDATE SKIP LOCKED'


def _reap(hold: Hold, note: str) -> bool:
    """Release one abandoned hold, and take it off its key's limit, in one transaction that locks the key
    and the account first, in the order every settlement does (row_locks); False when it was closed."""
    counted = key_limits.counted_hold(hold.request_id)

    def work() -> bool:
        db = database.obj
        if not is_sqlite_db(db) and not db.execute_sql(_CLAIM_HOLD, (hold.request_id,)).fetchall():
            return False  # being settled right now: that settlement closes it
        if not release_hold(hold.request_id, note=note):
            return False
        if counted is not None:
            key_limits.uncount(counted)
        return True

    return group_commit.alone(work, RowLocks((hold.account_id,), () if counted is None else (counted[0],)))


def balance(account_id: int) -> Balance:
    """The account's balance, credit on hold, lifetime purchases and tier."""
    account = Account.get_or_none(Account.id == account_id)
    if account is None:
        raise NotFound(f"No account {account_id}.")
    held = (Hold.select(fn.COALESCE(fn.SUM(Hold.amount_micros), 0))
            .where((Hold.account == account_id) & Hold.closed_at.is_null()).scalar())
    return Balance(account.id, account.balance_micros, int(held or 0), account.lifetime_purchased_micros,
                   account.tier)


def _find_account(email_or_account_id) -> Account:
    if isinstance(email_or_account_id, int) or str(email_or_account_id).isdigit():
        account = Account.get_or_none(Account.id == int(email_or_account_id))
    else:
        account = Account.get_or_none(fn.LOWER(Account.email) == str(email_or_account_id).strip().lower())
    if account is None:
        raise NotFound(f"No account {email_or_account_id!r}.")
    return account


def _default_ladder() -> TierLadder:
    from flask import has_app_context

    if has_app_context():
        from kyma.runtime import runtime

        return runtime().tiers
    from kyma.config import DATA

    return TierLadder.load(DATA / "tiers.json")


def add_credit(email_or_account_id, usd, *, kind: str = "purchase", idempotency_key: str | None = None,
               note: str = "", ladder: TierLadder | None = None) -> CreditResult:
    """Add credit (purchase or grant; adjustment may be negative); purchases raise the tier at once.

    With an idempotency key, a repeat with the same account, kind and amount replays the first
    result; the same key with anything else raises Conflict.
    """
    if kind not in CREDIT_KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(CREDIT_KINDS)}.")
    amount = usd_to_micros(usd)
    if amount == 0 or (amount < 0 and kind != "adjustment"):
        raise InvalidRequest("The amount must be positive (only an adjustment may be negative).")
    account = _find_account(email_or_account_id)
    ladder = ladder or _default_ladder()
    key = f"credit:{idempotency_key}" if idempotency_key else None
    first = _entry_with_key(key)
    if first is not None:
        return _replay(first, account.id, kind, amount)  # a repeat: nothing to insert, nothing to fail
    try:
        with group_commit.lone_transaction() as outcome:
            entry_id = _entry(account.id, kind, amount, key=key, note=note)
            outcome.landed = functools.partial(entry_landed, entry_id)
            debit_ok = (Account.update(balance_micros=Account.balance_micros + amount)
                        .where((Account.id == account.id) & (Account.balance_micros + amount >= 0))
                        .execute())
            if not debit_ok:
                raise InvalidRequest("The adjustment would take the balance below zero.")
            if kind == "purchase":
                Account.update(lifetime_purchased_micros=Account.lifetime_purchased_micros + amount) \
                    .where(Account.id == account.id).execute()
            fresh = Account.get_by_id(account.id)
            tier = max(fresh.tier, ladder.for_purchased(fresh.lifetime_purchased_micros).level)
            if tier != fresh.tier:
                Account.update(tier=tier).where(Account.id == account.id).execute()
    except IntegrityError:
        # A concurrent duplicate won the race. Nested, the caller's transaction is spoilt (see
        # write_transaction): let the caller fail and retry as a whole rather than read in it.
        if database.obj.in_transaction():
            raise
        first = _entry_with_key(key)
        if first is None:
            raise Conflict("The credit could not be recorded (a concurrent duplicate?); retry.") from None
        return _replay(first, account.id, kind, amount)
    return CreditResult(account.id, entry_id, amount, fresh.balance_micros, tier)


def entry_landed(entry_id: int) -> bool:
    """True when the ledger entry is in the database (its transaction's COMMIT landed)."""
    return LedgerEntry.select().where(LedgerEntry.id == entry_id).exists()


def _entry_with_key(key: str | None) -> LedgerEntry | None:
    return LedgerEntry.get_or_none(LedgerEntry.idempotency_key == key) if key else None


def _replay(first: LedgerEntry, account_id: int, kind: str, amount: int) -> CreditResult:
    """The first credit's result again, if this repeat asks for the same thing (else Conflict)."""
    if (first.account_id, first.kind, first.amount_micros) != (account_id, kind, amount):
        raise Conflict("This idempotency key was already used for a different credit.", code="idempotency_mismatch")
    account = Account.get_by_id(account_id)
    return CreditResult(account_id, first.id, amount, account.balance_micros, account.tier, replayed=True)


def grant_signup_credit(account_id: int, amount_micros: int) -> None:
    """Post the new-account credit (kind "signup"); call it inside the transaction creating the account."""
    if amount_micros <= 0:
        return
    with write_transaction():
        _entry(account_id, "signup", amount_micros, key=f"signup:{account_id}")
        _add_to_balance(account_id, amount_micros)


def check_ledger(now: datetime | None = None) -> list[Mismatch]:
    """Every account whose cached balance != its entry sum, whose open holds disagree with its
    hold/release entries, that is negative without a recorded overshoot, or that has an expired open hold."""
    now = now or utcnow()
    sums = dict(LedgerEntry.select(LedgerEntry.account, fn.SUM(LedgerEntry.amount_micros))
                .group_by(LedgerEntry.account).tuples())
    held_by_entries = dict(LedgerEntry.select(LedgerEntry.account, fn.SUM(LedgerEntry.amount_micros))
                           .where(LedgerEntry.kind.in_(("hold", "release")))
                           .group_by(LedgerEntry.account).tuples())
    open_holds = dict(Hold.select(Hold.account, fn.SUM(Hold.amount_micros))
                      .where(Hold.closed_at.is_null()).group_by(Hold.account).tuples())
    stale = set(Hold.select(Hold.account).where(Hold.closed_at.is_null() & (Hold.expires_at <= now)).tuples())
    overshot = set(LedgerEntry.select(LedgerEntry.account)
                   .where((LedgerEntry.kind == "usage") & LedgerEntry.note.startswith("overshoot")).tuples())
    problems: list[Mismatch] = []
    for account in Account.select(Account.id, Account.email, Account.balance_micros).order_by(Account.id):
        total = int(sums.get(account.id) or 0)
        if account.balance_micros != total:
            problems.append(Mismatch(account.id, account.email,
                                     f"balance {account.balance_micros} != sum of entries {total}"))
        held = int(open_holds.get(account.id) or 0)
        by_entries = -int(held_by_entries.get(account.id) or 0)
        if held != by_entries:
            problems.append(Mismatch(account.id, account.email,
                                     f"open holds {held} != hold minus release entries {by_entries}"))
        if account.balance_micros < 0 and (account.id,) not in overshot:
            problems.append(Mismatch(account.id, account.email,
                                     f"negative balance {account.balance_micros} without a recorded overshoot"))
        if (account.id,) in stale:
            problems.append(Mismatch(account.id, account.email, "an open hold is past its expiry (run `ledger reap`)"))
    return problems


def open_holds() -> tuple[int, int]:
    """Holds not yet settled or released: how many, and the micro-dollars they reserve (for /metrics)."""
    with connected():
        rows = Hold.select(fn.COUNT(Hold.id), fn.COALESCE(fn.SUM(Hold.amount_micros), 0)).where(
            Hold.closed_at.is_null()).tuples()
        count, micros = rows[0]
    return int(count), int(micros)
