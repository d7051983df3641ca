"""Writes a request could not make itself because every database connection stayed in use.

A request refused for a full pool still gets its request-log row, and a credit hold it took is still
given back: the write is queued here and the request answers at once (waiting for a connection is
what it just failed to do). One background writer per process (a greenlet under gevent, a thread
outside it) commits the queue through the group committer once a connection is free, a bounded
batch per transaction, retrying while the pool stays full. The queue is bounded so that a pool that
never frees cannot eat the worker's memory; what it refuses is logged by request id, as is a write
that fails for any other reason. Each write may say how to tell that it landed; a batch all of whose
writes can is not run again after a COMMIT whose answer was lost, unless the database says it did not land.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from playhouse.pool import MaxConnectionsExceeded

from kyma.outage import OutageWarning
from kyma.services import row_locks
from kyma.services.row_locks import RowLocks

if TYPE_CHECKING:
    from kyma.services.group_commit import Landed

log = logging.getLogger(__name__)
_waiting = OutageWarning(log, "deferred writes wait for the database: %s")

# Rows one worker may owe at once: far more than a burst of refusals, far less than its memory.
LIMIT = 10_000
# Writes committed per transaction: a full queue in one would hold the write lock (and, on
# PostgreSQL, its accounts' row locks) for as long as ten thousand requests' rows take, stalling
# every request of every worker that writes meanwhile.
BATCH = 200
_FIRST_PAUSE, _LONGEST_PAUSE = 0.05, 1.0  # between tries while the pool stays full or the database away


@dataclass
class Write:
    """One request's deferred unit of work (database writes only) and what to do once it is committed."""

    request_id: str
    work: Callable[[], object]
    after: Callable[[], None] | None = None  # metrics and the log line: after the commit, outside it
    landed: Landed | None = None  # whether the write landed, should its COMMIT's answer be lost
    locks: RowLocks = row_locks.NONE  # the accounts and keys it writes, locked in one order with the batch's


class _Writer:
    """This process's queue and the background writer that empties it."""

    def __init__(self):
        self.pid = os.getpid()
        self.queue: deque[Write] = deque()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self.thread = threading.Thread(target=self._loop, name="kyma-deferred-writes", daemon=True)
        self.thread.start()

    def submit(self, write: Write) -> bool:
        with self.lock:
            if len(self.queue) >= LIMIT:
                return False
            self.queue.append(write)
            self.idle.clear()
        self.wake.set()
        return True

    def _loop(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            while True:
                with self.lock:  # idle only when nothing was queued since the last batch was taken
                    if not self.queue:
                        self.idle.set()
                        break
                    batch = list(itertools.islice(self.queue, BATCH))
                _commit(batch)
                with self.lock:
                    for _ in batch:
                        self.queue.popleft()


def _unreachable(exc: Exception) -> bool:
    """True for a full pool, or a database that could not be reached or whose answer was lost (a restart,
    a failover), as opposed to the server refusing the writes or a fault in them."""
    from peewee import InterfaceError, OperationalError

    from kyma.db import wrote_nothing

    return isinstance(exc, MaxConnectionsExceeded) or (
        isinstance(exc, (OperationalError, InterfaceError)) and not wrote_nothing(exc))


def _commit(batch: list[Write]) -> None:
    """Commit the batch in one transaction, waiting out a full pool or an unreachable database (served
    answers' charges are among these writes: dropping them would leave them unbilled); a unit that fails
    otherwise is logged and dropped (trying it again would only repeat the failure), and never takes
    the others along. A batch whose COMMIT landed unseen and runs again is refused by the unique indexes."""
    from kyma.services import group_commit

    pause = _FIRST_PAUSE
    while True:
        try:
            group_commit.run(lambda: [w.work() for w in batch], landed=_landed(batch),
                             locks=row_locks.merged(w.locks for w in batch))
            break
        except Exception as exc:
            if _unreachable(exc):
                if pause >= _LONGEST_PAUSE:
                    _waiting(exc)
                time.sleep(pause)
                pause = min(2 * pause, _LONGEST_PAUSE)
                if _landed_unseen(batch, exc):
                    break  # its COMMIT landed, the answer was lost and could not be looked up then
                continue
            if len(batch) == 1:
                log.exception("could not write the deferred request-log row of request %s", batch[0].request_id)
                return
            # One bad unit: the others are written one by one. Should the batch's COMMIT have landed
            # unseen (the group committer could not look it up), a write logged twice is refused by the
            # request id's unique index and a row marked failed twice reads the same.
            for write in batch:
                _commit([write])
            return
    for write in batch:
        if write.after is not None:
            try:
                write.after()
            except Exception:
                log.exception("announcing deferred request %s failed", write.request_id)


def _landed_unseen(batch: list[Write], exc: Exception) -> bool:
    """After a failure whose outcome is unknown: whether the batch's writes are in after all. False when
    nothing can have landed or the database cannot say yet (the batch is tried again)."""
    from kyma.db import connected, wrote_nothing

    if not _can_tell(batch) or wrote_nothing(exc):
        return False
    try:
        with connected():
            return bool(_all_landed([batch])[0])
    except Exception:
        return False


def _landed(batch: list[Write]) -> Landed | None:
    """Whether a batch's writes landed, when each can tell (they commit together, so all or none did)."""
    from kyma.services import group_commit

    if not _can_tell(batch):
        return None
    return group_commit.Landed(_all_landed, batch)


def _can_tell(batch: list[Write]) -> bool:
    """Whether every write of the batch can tell that it landed."""
    return all(w.landed is not None for w in batch)


def _all_landed(batches: list[list[Write]]) -> list[bool | None]:
    """True for each batch all of whose writes are in the database; None otherwise."""
    from kyma.services import group_commit

    found = iter(group_commit.look_up([w.landed for batch in batches for w in batch]))
    # Every write's answer is taken, so the next batch starts at its own first one.
    every = [[next(found) not in (None, group_commit.CANNOT_TELL) for _ in batch] for batch in batches]
    return [True if all(landed) else None for landed in every]


_writer: _Writer | None = None
_lock = threading.Lock()


def submit(request_id: str, work: Callable[[], object], after: Callable[[], None] | None = None,
           landed: Landed | None = None, locks: RowLocks = row_locks.NONE) -> bool:
    """Queue a write for when a connection is free, without waiting; False (and logged) when the queue is full.
    `landed` tells whether it landed, should its COMMIT's answer be lost; `locks` what it writes."""
    global _writer
    with _lock:
        if _writer is None or _writer.pid != os.getpid():  # a forked worker starts its own
            _writer = _Writer()
    queued = _writer.submit(Write(request_id, work, after, landed, locks))
    if not queued:
        log.error("deferred-write queue full (%d): the request-log row of request %s is lost", LIMIT, request_id)
    return queued


def drain(timeout: float) -> bool:
    """Wait up to `timeout` seconds for every queued write to be committed; True when none is left."""
    writer = _writer
    if writer is None or writer.pid != os.getpid():
        return True
    return writer.idle.wait(timeout)


def pending() -> int:
    """Writes queued and not yet committed in this process."""
    writer = _writer
    return 0 if writer is None or writer.pid != os.getpid() else len(writer.queue)
