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
writes as one statement. Units name the accounts and keys they write (RowLocks); a group's
transaction locks them all, in one order, before any unit runs.

Outside gevent (tests, CLI) the work simply runs in its own transaction; inside an open one it joins it.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable

from kyma.db import (connected, database, is_deadlock, is_sqlite_db, release_connection, savepoint,
                     shares_connection, write_transaction)
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


@dataclass
class _Unit:
    """One request's writes and where its outcome goes."""

    work: Callable[[], Any]
    result: Any = field(default=None)  # a gevent AsyncResult, made by the flusher's process
    isolated: bool = False  # in its own savepoint: its exception (a refusal) undoes only its own writes
    batch: Batch | None = None  # the same writes as `work`, as data (PostgreSQL writes the group's at once)
    locks: RowLocks = row_locks.NONE  # the shared rows `work` may write, locked in one order before any unit runs


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
    """One writer's units in one go; if it fails (it wrote nothing), each unit runs alone."""
    try:
        with connected():
            values = writer([unit.batch.item for unit in units])
        if len(values) != len(units):
            raise RuntimeError(f"{writer.__name__} gave {len(values)} results for {len(units)} units")
    except Exception:
        if len(units) > 1:
            log.info("a batch of %d units failed; committing them one by one", len(units))
        _each_alone(units)
        return
    for unit, value in zip(units, values):
        unit.result.set(value)


def _commit_units(group: list[_Unit], more: Callable[[], list[_Unit]] | None) -> None:
    """Run the units' work in one transaction; if a unit that is not isolated fails, roll back and run each
    alone (a lone unit is not run twice)."""
    from kyma.services import ledger

    outcomes: list[tuple[bool, Any]] | None = []
    try:
        with connected() as db, ExitStack() as stack:
            _begin(db, stack)
            if more is not None:
                group.extend(more())
            if not is_sqlite_db(db):
                row_locks.lock(db, (unit.locks for unit in group))
            stack.enter_context(ledger.deferred_balances())
            for unit in group:
                if not unit.isolated:
                    outcomes.append((True, unit.work()))
                    continue
                try:
                    with savepoint():
                        outcomes.append((True, unit.work()))
                except Exception as exc:
                    outcomes.append((False, exc))
    except Exception as exc:
        # A lone unit's failure is its own: running it again would only repeat it, unless the server
        # aborted it to break a deadlock (then _each_alone runs it again).
        if len(group) == 1 and not is_deadlock(exc):
            group[0].result.set_exception(exc)
            return
        log.info("a group of %d units failed; committing them one by one", len(group))
        outcomes = None
    if outcomes is None:
        _each_alone(group)
        return
    for unit, (ok, value) in zip(group, outcomes):
        if ok:
            unit.result.set(value)
        else:
            unit.result.set_exception(value)


def _each_alone(units: list[_Unit]) -> None:
    for unit in units:
        try:
            unit.result.set(_alone(unit.work, unit.locks))
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


def _alone(work: Callable[[], Any], locks: RowLocks = row_locks.NONE) -> Any:
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            with connected() as db, write_transaction():
                if not is_sqlite_db(db):
                    row_locks.lock(db, (locks,))
                return work()
        except Exception as exc:
            if attempt == DEADLOCK_RETRIES or not is_deadlock(exc):
                raise
            log.info("a unit was aborted to break a deadlock; running it again")


_flusher: _Flusher | None = None
_window_seconds = 0.0


def configure(window_ms: float) -> None:
    """How long the flusher waits for more requests to join a group (0: only those ready now)."""
    global _window_seconds
    _window_seconds = max(0.0, window_ms) / 1000


def run(work: Callable[[], Any], *, isolated: bool = False, batch: Batch | None = None,
        locks: RowLocks = row_locks.NONE) -> Any:
    """Commit `work` (database writes only, no I/O of its own) with whatever this worker writes alongside;
    its result, or its exception. An `isolated` unit may raise to undo its own writes and no one else's.
    `batch`, the same writes as data, lets PostgreSQL write them with the group's others in one statement.
    `locks` names the accounts and keys `work` may write: they are locked in one order before it runs."""
    global _flusher
    db = database.obj
    if not gevent_patched() or db.in_transaction():
        return _alone(work, locks)
    if _flusher is None or _flusher.pid != os.getpid():  # a forked worker starts its own
        _flusher = _Flusher(_window_seconds)
    # The flusher needs a pooled (PostgreSQL) connection: waiters holding theirs could take the last.
    release_connection()
    from gevent.event import AsyncResult

    unit = _Unit(work, AsyncResult(), isolated, batch, locks)
    _flusher.submit(unit)
    return unit.result.get()
