"""One lock order for the rows several requests share: API keys by id, then accounts by id.

On PostgreSQL a transaction that writes several of these rows takes their locks as it goes; two
transactions that take them in different orders can each wait for the other, and the server then
aborts one. Every write of several such rows therefore locks them in this order first: a group
commit's transaction before any unit's work, a batch of holds by sorting it, the one-statement group
settle with `SELECT ... ORDER BY id FOR NO KEY UPDATE` parts, the reaper before it closes a hold. A lock taken later in the transaction on
a row it already holds waits for no one, so the order the units then touch them in no longer matters.
NO KEY UPDATE is the lock the balance updates take anyway; FOR UPDATE would also block the key-share
lock a new request-log row's foreign key takes on its account, which waits outside this order.

SQLite needs none of this: a write transaction holds the whole database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

# A locking SELECT sorts before it locks (the lock node sits above the sort), so rows are locked in
# id order; ANY(array) keeps the text the same for any number of ids (one plan per connection).
LOCK_KEYS = 'SELECT "id" FROM "apikey" WHERE "id" = ANY(%s) ORDER BY "id" FOR NO KEY UPDATE'
LOCK_ACCOUNTS = 'SELECT "id" FROM "account" WHERE "id" = ANY(%s) ORDER BY "id" FOR NO KEY UPDATE'


@dataclass(frozen=True)
class RowLocks:
    """The shared rows a unit of work may write: its accounts and the API keys whose limits it changes."""

    accounts: tuple[int, ...] = ()
    api_keys: tuple[int, ...] = ()


NONE = RowLocks()


def of(principal) -> RowLocks:
    """What a request of this caller writes: its account, and its key when the key has a credit limit."""
    from kyma.services.key_limits import limited_key

    if principal is None:
        return NONE
    key = limited_key(principal)
    return RowLocks((principal.account_id,), () if key is None else (key,))


def merged(many: Iterable[RowLocks]) -> RowLocks:
    """One RowLocks naming every row of `many`: a unit that does the work of several."""
    many = list(many)
    return RowLocks(tuple(sorted({a for m in many for a in m.accounts})),
                    tuple(sorted({k for m in many for k in m.api_keys})))


def lock(db, wanted: Iterable[RowLocks]) -> None:
    """Inside a PostgreSQL write transaction: lock every row `wanted` names, keys then accounts, each by id."""
    rows = merged(wanted)
    if rows.api_keys:
        db.execute_sql(LOCK_KEYS, (list(rows.api_keys),))
    if rows.accounts:
        db.execute_sql(LOCK_ACCOUNTS, (list(rows.accounts),))
