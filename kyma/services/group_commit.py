"""Group commit: the credit holds and settle-and-log writes of a worker's requests share transactions.

Under gevent each worker has one flusher greenlet. A request hands it its unit of work
(database writes only) and waits for the commit before it goes on: a hold is committed before
the upstream call, a settlement before the answer. So a killed worker loses only
work whose client got no answer: its holds stay open and the reaper releases them, as for any
request a dead worker was serving. One transaction for many requests means one write lock, one
commit and each touched page written once, instead of per request; with two workers that is also
what keeps them from queueing on SQLite's lock. An isolated unit (an admission, which a refusal
undoes) runs in its own savepoint; if any other unit fails, the group is rolled back and every unit
runs again alone (a unit that was alone already just gets its error). Either way one request's
failure never undoes another's writes.

On PostgreSQL each write is a network round trip, so a unit may also carry its writes as data (a
Batch): the group's holds go out pipelined in one round trip and one commit, its settle-and-log
writes as one statement. If the connection fails while a commit is under way (a batch's or a group
transaction's), its outcome is unknown: the units are not run again blindly (that could hold, charge
or log a request twice), the database is asked which of them landed. A unit says how with a Landed
check (a Batch's `landed` serves as one); a unit without one gets the error.
Units also name the accounts and keys they write (RowLocks); a group's transaction locks them
all, in one order, before any unit runs.

Outside gevent (tests, CLI) the work simply runs in its own transaction; inside an open one it joins it.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from kyma.db import (connected, database, is_deadlock, is_sqlite_db, release_connection, savepoint,
                     shares_connection, write_transaction, wrote_nothing)
from kyma.greenlets import gevent_patched
from kyma.services import row_locks
from kyma.services.row_locks import RowLocks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """A unit's writes as data, for a writer that writes a whole group's items in one statement.

    `writer(items)` returns one result per item, in order. Only PostgreSQL uses it (one round trip
    for the group instead of several per unit); SQLite runs the unit's work, which has no round trips.
    """

    writer: Callable[[list], list]
    item: Any
    # `landed(items)`: for each item, the writer's result when its writes are in the database, else None.
    # Asked when the connection failed during the writer's COMMIT, instead of running the units blindly.
    landed: Callable[[list], list] | None = None


class Landed(NamedTuple):
    """How the database tells whether a unit's writes landed, after a COMMIT whose outcome was lost.

    `check(items)` gives, for each item, a value other than None when that item's writes are in the
    database, else None. Units that share a check are asked in one call. A tuple: one is made per
    request, and a tuple costs the least to make.
    """

    check: Callable[[list], list]
    item: Any


@dataclass
class _Unit:
    """One request's writes and where its outcome goes."""

    work: Callable[[], Any]
    result: Any = field(default=None)  # a gevent AsyncResult, made by the flusher's process
    isolated: bool = False  # in its own savepoint: its exception (a refusal) undoes only its own writes
    batch: Batch | None = None  # the same writes as `work`, as data (PostgreSQL writes the group's at once)
    landed: Landed | None = None  # whether `work`'s writes landed, for a unit whose batch cannot tell
    locks: RowLocks = row_locks.NONE  # the shared rows `work` may write, locked in one order before any unit runs

    def lookup(self) -> Landed | None:
        """How to tell whether this unit's writes landed; None when it cannot say."""
        return _lookup(self.batch, self.landed)


def _lookup(batch: Batch | None, landed: Landed | None) -> Landed | None:
    """How to tell whether a unit's writes landed: its batch's check first (it gives the writer's result)."""
    if batch is not None and batch.landed is not None:
        return Landed(batch.landed, batch.item)
    return landed


class _Flusher:
    """This process's queue of pending units and the greenlet that commits them."""

    def __init__(self, window_seconds: float):
        import gevent
        from gevent.event import Event

        self.pid = os.getpid()
        self.window = window_seconds
        self.queue: list[_Unit] = []
        self.wake = Event()
        self.greenlet = gevent.spawn(self._loop)

    def submit(self, unit: _Unit) -> None:
        self.queue.append(unit)
        self.wake.set()

    def take(self) -> list[_Unit]:
        """The units queued since the group was taken (they join it while it waited for the lock)."""
        more, self.queue = self.queue, []
        return more

    def _loop(self) -> None:
        import gevent

        while True:
            self.wake.wait()
            self.wake.clear()
            # Let the greenlets that are ready now finish too: they join this group.
            gevent.sleep(self.window)
            group = self.take()
            if group:
                try:
                    commit_group(group, self.take)
                except BaseException as exc:  # never leave a waiter hanging
                    for unit in group:
                        if not unit.result.ready():
                            unit.result.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise


def commit_group(group: list[_Unit], more: Callable[[], list[_Unit]] | None = None) -> None:
    """Commit every unit; each unit's outcome goes to its waiter, and one unit's failure undoes no other's.

    On PostgreSQL the units that carry a Batch are written by their writer, all of a writer's in
    one round trip that commits by itself. The other units run in one transaction; if one that is
    not isolated fails, it is rolled back and each runs alone. `more` gives units that arrived
    while the write lock was awaited: they join the group.
    """
    if not is_sqlite_db(database.obj):
        group.extend(more() if more is not None else ())
        more = None
        for writer, units in _batches(group).items():
            _write_batch(writer, units)
        group = [unit for unit in group if unit.batch is None]
        if not group:
            return
    _commit_units(group, more)


def _batches(group: list[_Unit]) -> dict[Callable[[list], list], list[_Unit]]:
    """The group's batched units by writer, in arrival order."""
    batches: dict[Callable[[list], list], list[_Unit]] = {}
    for unit in group:
        if unit.batch is not None:
            batches.setdefault(unit.batch.writer, []).append(unit)
    return batches


def _write_batch(writer: Callable[[list], list], units: list[_Unit]) -> None:
    """One writer's units in one go. If the server refused it (it wrote nothing), each unit runs alone; if
    the connection failed on the way, its COMMIT may have landed, and the database says which units did."""
    try:
        with connected():
            values = writer([unit.batch.item for unit in units])
    except Exception as exc:
        if wrote_nothing(exc):
            if len(units) > 1:
                log.info("a batch of %d units failed; committing them one by one", len(units))
            _each_alone(units)
            return
        log.warning("the connection failed while a batch of %d units was written (%s); looking up which landed",
                    len(units), exc)
        _by_what_landed(units, exc)
        return
    if len(values) != len(units):
        # The commit stands: running the units again could write them twice. The writer has a bug.
        log.error("%s gave %d results for %d units; its commit stands, looking up which landed",
                  writer.__name__, len(values), len(units))
        _by_what_landed(units, RuntimeError(f"{writer.__name__} gave {len(values)} results for {len(units)} units"))
        return
    for unit, value in zip(units, values):
        unit.result.set(value)


def _by_what_landed(units: list[_Unit], exc: Exception, done: list | None = None) -> None:
    """After a commit whose outcome is unknown: a unit whose writes landed gets its result (`done`, what its
    work returned in the lost transaction, else what the lookup found), one whose writes did not runs alone,
    and one that cannot tell gets `exc`. When the lookup fails, each unit gets `exc` and none runs twice."""
    try:
        found = _look_up(units)
    except Exception:
        log.exception("could not tell which of %d units landed; failing them", len(units))
        for unit in units:
            unit.result.set_exception(exc)
        return
    again = []
    for i, (unit, value) in enumerate(zip(units, found)):
        if value is CANNOT_TELL:
            log.error("a unit that cannot tell whether it landed fails with %s rather than run twice", exc)
            unit.result.set_exception(exc)
        elif value is None:
            again.append(unit)
        else:
            unit.result.set(value if done is None else done[i])
    _each_alone(again)


CANNOT_TELL = object()


def _look_up(units: list[_Unit]) -> list:
    """For each unit, its check's answer (None: not landed), or CANNOT_TELL when it has no check."""
    return look_up([unit.lookup() for unit in units])


def look_up(lookups: list[Landed | None]) -> list:
    """For each lookup, its check's answer (None: not landed), or CANNOT_TELL for a missing one. The
    items of one check are asked in one call."""
    found: list = [CANNOT_TELL] * len(lookups)
    by_check: dict[Callable[[list], list], list[int]] = {}
    for i, lookup in enumerate(lookups):
        if lookup is not None:
            by_check.setdefault(lookup.check, []).append(i)
    if by_check:
        with connected():
            for check, indexes in by_check.items():
                answers = check([lookups[i].item for i in indexes])
                for i, value in zip(indexes, answers, strict=True):
                    found[i] = value
    return found


def _commit_units(group: list[_Unit], more: Callable[[], list[_Unit]] | None) -> None:
    """Run the units' work in one transaction; if a unit that is not isolated fails, roll back and run each
    alone (a lone unit is not run twice). If the connection fails during the COMMIT, the database says
    which units landed."""
    from kyma.services import ledger

    outcomes: list[tuple[bool, Any]] = []
    committing = False
    try:
        with connected() as db, ExitStack() as stack:
            _begin(db, stack)
            if more is not None:
                group.extend(more())
            if not is_sqlite_db(db):
                row_locks.lock(db, (unit.locks for unit in group))
            with ledger.deferred_balances():
                for unit in group:
                    if not unit.isolated:
                        outcomes.append((True, unit.work()))
                        continue
                    try:
                        with savepoint():
                            outcomes.append((True, unit.work()))
                    except Exception as exc:
                        outcomes.append((False, exc))
            committing = True  # leaving the block sends the COMMIT
    except Exception as exc:
        if committing and not wrote_nothing(exc):
            log.warning("the connection failed while a group of %d units committed (%s); looking up which landed",
                        len(group), exc)
            _after_unknown_commit(group, outcomes, exc)
            return
        # A lone unit's failure is its own: running it again would only repeat it, unless the server
        # aborted it to break a deadlock (then _each_alone runs it again).
        if len(group) == 1 and not is_deadlock(exc):
            group[0].result.set_exception(exc)
            return
        log.info("a group of %d units failed; committing them one by one", len(group))
        _each_alone(group)
        return
    for unit, (ok, value) in zip(group, outcomes):
        if ok:
            unit.result.set(value)
        else:
            unit.result.set_exception(value)


def _after_unknown_commit(group: list[_Unit], outcomes: list[tuple[bool, Any]], exc: Exception) -> None:
    """A group whose COMMIT may or may not have landed. A unit refused in its savepoint wrote nothing either
    way, so it runs again alone; the others are resolved by what landed, with what their work returned."""
    ran = [(unit, value) for unit, (ok, value) in zip(group, outcomes) if ok]
    _by_what_landed([unit for unit, _ in ran], exc, [value for _, value in ran])
    _each_alone([unit for unit, (ok, _) in zip(group, outcomes) if not ok])


def _each_alone(units: list[_Unit]) -> None:
    for unit in units:
        try:
            unit.result.set(alone(unit.work, unit.locks, unit.lookup()))
        except Exception as exc:
            unit.result.set_exception(exc)


def _begin(db, stack: ExitStack) -> None:
    """Open the group's write transaction. On SQLite under gevent a lock another worker holds is
    awaited with gevent.sleep, so this worker's other greenlets run (and more units queue) meanwhile,
    instead of the whole worker sleeping in SQLite's busy handler."""
    if not (is_sqlite_db(db) and shares_connection(db)):
        stack.enter_context(write_transaction())
        return
    import gevent
    from peewee import OperationalError

    from kyma import sqlite

    deadline = time.monotonic() + sqlite.BUSY_WAIT_SECONDS
    pause = 0.00005
    while True:
        txn = write_transaction()
        try:
            with sqlite.fail_fast():  # no greenlet switch inside: BEGIN returns or fails at once
                txn.__enter__()
        except OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            gevent.sleep(pause)
            pause = min(2 * pause, 0.001)
            continue
        stack.push(txn)  # its __exit__ commits, or rolls back on an error
        return


# Accounts and keys are locked in one order (row_locks), but a deadlock can still go through a row
# outside it (a hold the reaper closes meanwhile); PostgreSQL then aborts one transaction, which wrote
# nothing, so it is run again rather than failing its request.
DEADLOCK_RETRIES = 3


def alone(work: Callable[[], Any], locks: RowLocks = row_locks.NONE, landed: Landed | None = None) -> Any:
    """Commit `work` in a transaction of its own, its rows locked in the one order first; run again if
    the server aborted it to break a deadlock. If the connection fails during its COMMIT, `landed` says
    whether its writes are in: then what it returned stands; if they are not, it runs again. Without
    `landed`, or when the lookup fails too, that error propagates rather than the work run twice."""
    for attempt in range(DEADLOCK_RETRIES + 1):
        done, result = False, None
        try:
            with connected() as db, write_transaction():
                if not is_sqlite_db(db):
                    row_locks.lock(db, (locks,))
                result = work()
                done = True  # leaving the block sends the COMMIT
            return result
        except Exception as exc:
            if done and landed is not None and not wrote_nothing(exc):
                if _landed_after(exc, lambda: look_up([landed])[0] is not None):
                    return result
                if attempt == DEADLOCK_RETRIES:
                    raise
                continue  # nothing of it landed: running it again is safe
            if attempt == DEADLOCK_RETRIES or not is_deadlock(exc):
                raise
            log.info("a unit was aborted to break a deadlock; running it again")


def _landed_after(exc: Exception, check: Callable[[], bool]) -> bool:
    """After a COMMIT whose answer was lost (`exc`): whether its writes landed, as `check` finds; `exc`
    again when the database cannot say."""
    log.warning("the connection failed while a transaction committed (%s); looking up whether it landed", exc)
    try:
        with connected():
            return check()
    except Exception:
        log.exception("could not tell whether a transaction landed; failing it")
        raise exc from None


class Outcome:
    """How to tell whether a lone transaction landed: a check its block sets once it wrote a row to find."""

    landed: Callable[[], bool] | None = None


@contextmanager
def lone_transaction():
    """A write transaction of its own (or the open one it joins) whose COMMIT's lost answer is looked up.

    The block sets `outcome.landed`; if the connection fails during the COMMIT and that check finds the
    writes, the block counts as committed, else (or when the database cannot say) the error propagates.
    """
    outcome, done = Outcome(), False
    try:
        with write_transaction():
            yield outcome
            done = True  # leaving the block sends the COMMIT
    except Exception as exc:
        if not done or outcome.landed is None or wrote_nothing(exc):
            raise
        if not _landed_after(exc, outcome.landed):
            raise


_flusher: _Flusher | None = None
_window_seconds = 0.0


def configure(window_ms: float) -> None:
    """How long the flusher waits for more requests to join a group (0: only those ready now)."""
    global _window_seconds
    _window_seconds = max(0.0, window_ms) / 1000


def run(work: Callable[[], Any], *, isolated: bool = False, batch: Batch | None = None,
        landed: Landed | None = None, locks: RowLocks = row_locks.NONE) -> Any:
    """Commit `work` (database writes only, no I/O of its own) with whatever this worker writes alongside;
    its result, or its exception. An `isolated` unit may raise to undo its own writes and no one else's.
    `batch`, the same writes as data, lets PostgreSQL write them with the group's others in one statement.
    `landed` tells whether the writes landed when a COMMIT's outcome is lost (else the unit gets the error).
    `locks` names the accounts and keys `work` may write: they are locked in one order before it runs."""
    global _flusher
    db = database.obj
    if not gevent_patched() or db.in_transaction():
        return alone(work, locks, _lookup(batch, landed))
    if _flusher is None or _flusher.pid != os.getpid():  # a forked worker starts its own
        _flusher = _Flusher(_window_seconds)
    # The flusher needs a pooled (PostgreSQL) connection: waiters holding theirs could take the last.
    release_connection()
    from gevent.event import AsyncResult

    unit = _Unit(work, AsyncResult(), isolated, batch, landed, locks)
    _flusher.submit(unit)
    return unit.result.get()
