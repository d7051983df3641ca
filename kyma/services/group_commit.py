"""Group commit: the settle-and-log writes of requests that finish together share one transaction.

Under gevent each worker has one flusher greenlet. A finishing request hands it its unit of work
(database writes only) and waits for the commit before it answers, so a killed worker loses only
work whose client got no answer: its holds stay open and the reaper releases them, as for any
request a dead worker was serving. One transaction for many requests means one write lock, one
commit and each touched page written once, instead of per request; with two workers that is also
what keeps them from queueing on SQLite's lock. If a unit fails, the group is rolled back and every
unit runs again alone, so one bad request cannot undo the others.

Outside gevent (tests, CLI) and inside an open transaction the work simply runs in its own.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from kyma.db import connected, database, write_transaction
from kyma.greenlets import gevent_patched

log = logging.getLogger(__name__)


@dataclass
class _Unit:
    """One request's writes and where its outcome goes."""

    work: Callable[[], Any]
    result: Any = field(default=None)  # a gevent AsyncResult, made by the flusher's process


class _Flusher:
    """This process's queue of pending units and the greenlet that commits them."""

    def __init__(self, window_seconds: float):
        from gevent.event import Event

        self.pid = os.getpid()
        self.window = window_seconds
        self.queue: list[_Unit] = []
        self.wake = Event()
        import gevent

        self.greenlet = gevent.spawn(self._loop)

    def submit(self, unit: _Unit) -> None:
        self.queue.append(unit)
        self.wake.set()

    def _loop(self) -> None:
        import gevent

        while True:
            self.wake.wait()
            self.wake.clear()
            # Let the greenlets that are ready now finish too: they join this group.
            gevent.sleep(self.window)
            group, self.queue = self.queue, []
            if group:
                try:
                    commit_group(group)
                except BaseException as exc:  # never leave a waiter hanging
                    for unit in group:
                        if not unit.result.ready():
                            unit.result.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise


def commit_group(group: list[_Unit]) -> None:
    """Run every unit in one transaction; if any fails, roll back and run each in its own."""
    from kyma.services import ledger

    try:
        with connected(), write_transaction(), ledger.deferred_balances():
            results = [unit.work() for unit in group]
    except Exception:
        if len(group) > 1:
            log.info("a group of %d settlements failed; committing them one by one", len(group))
        results = None
    if results is not None:
        for unit, value in zip(group, results):
            unit.result.set(value)
        return
    for unit in group:
        try:
            unit.result.set(_alone(unit.work))
        except Exception as exc:
            unit.result.set_exception(exc)


def _alone(work: Callable[[], Any]) -> Any:
    with connected(), write_transaction():
        return work()


_flusher: _Flusher | None = None
_window_seconds = 0.0


def configure(window_ms: float) -> None:
    """How long the flusher waits for more requests to join a group (0: only those ready now)."""
    global _window_seconds
    _window_seconds = max(0.0, window_ms) / 1000


def run(work: Callable[[], Any]) -> Any:
    """Commit `work` (database writes only, no I/O of its own) with whatever finishes alongside; its result."""
    global _flusher
    db = database.obj
    if not gevent_patched() or db.in_transaction():
        return _alone(work)
    if _flusher is None or _flusher.pid != os.getpid():  # a forked worker starts its own
        _flusher = _Flusher(_window_seconds)
    from gevent.event import AsyncResult

    unit = _Unit(work, AsyncResult())
    _flusher.submit(unit)
    return unit.result.get()
