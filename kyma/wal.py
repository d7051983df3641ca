"""SQLite upkeep in a background OS thread, off the request path: WAL checkpoints and a quick check.

By default, the commit that takes SQLite's write-ahead log past 1000 pages also copies the log
back into the database and fsyncs both files (with synchronous=NORMAL, checkpoints are the only
syncs): now and then one request paid for everyone's writes. This thread takes that work off
the request path (docs/benchmarks.md has the measurements).

A gevent worker's connection keeps SQLite's own policy with a WAL hook instead of the automatic
checkpoint: after each commit SQLite tells the hook how long the log is, and from CHECKPOINT_PAGES
on the hook wakes this thread, which runs a PASSIVE checkpoint on its own connection, at most one
every SPACING_SECONDS. It is a real thread: SQLite releases the GIL while it copies and syncs, so
the greenlets keep serving. Durability is unchanged: the same syncs, at checkpoint time.

Nothing here opens SQLite's files itself: what the log holds comes from SQLite (the hook), and all
work goes through SQLite connections. An earlier version read the WAL index (the -shm file) with
os.open and os.close; closing any descriptor of a file drops every POSIX lock the process holds on
it, SQLite's included, so another worker could restart the log under a live reader and corrupt the
database.

The same thread runs PRAGMA quick_check every QUICK_CHECK_SECONDS (the first one to two
FIRST_QUICK_CHECK_SECONDS after it starts, so that workers started together take turns); a failure,
or a file too damaged to check, is kept for /healthz and reported to the reaper, which logs it at
CRITICAL (this thread must not log: logging's locks are gevent's in a patched worker).
"""

from __future__ import annotations

import os
import random
import time
from collections import deque
from dataclasses import dataclass

import apsw
from gevent.monkey import get_original

from kyma import sqlite

CHECKPOINT_PAGES = 1000  # SQLite's own wal_autocheckpoint default
SPACING_SECONDS = 0.5  # at most two checkpoints (four syncs) a second, however fast the log grows
# Pages at which the hook checkpoints inline, as SQLite itself would: reached only if this thread
# stalls, far above what the log grows between two checkpoints at full load (docs/benchmarks.md).
BACKSTOP_PAGES = 40000
QUICK_CHECK_SECONDS = 600
FIRST_QUICK_CHECK_SECONDS = 60
ERROR_PAUSE_SECONDS = 5  # after a failed checkpoint: retry, without flooding the log

_start_thread = get_original("_thread", "start_new_thread")  # an OS thread, not a greenlet
_allocate_lock = get_original("_thread", "allocate_lock")
_sleep = get_original("time", "sleep")


@dataclass(frozen=True)
class Report:
    """Something the thread met, for the reaper to log: `critical` for a failed integrity check."""

    message: str
    critical: bool = False


class Upkeep:
    """One database file's checkpoint and check thread in this process."""

    def __init__(self, path: str, pages: int = CHECKPOINT_PAGES, spacing: float = SPACING_SECONDS,
                 check_every: float = QUICK_CHECK_SECONDS, first_check: float = FIRST_QUICK_CHECK_SECONDS):
        self.path = path
        self.pages = pages
        self.spacing = spacing
        self.check_every = check_every
        self.first_check = first_check
        self.checkpoints = 0  # completed, for tests and curiosity
        self.integrity_failure: str | None = None  # the last quick check's complaint, None when it passed
        self.reports: deque[Report] = deque(maxlen=20)
        self._wake = _allocate_lock()
        self._wake.acquire()  # held: released by the hook to wake the thread
        self._running = False
        self._alive = False

    def start(self) -> None:
        """Start the thread."""
        self._running = self._alive = True
        _start_thread(self._run, ())

    def stop(self) -> None:
        """Let the thread end after its current step (tests; a worker's runs until it exits)."""
        self._running = False
        self.wake()

    @property
    def alive(self) -> bool:
        """True until the thread has ended."""
        return self._alive

    def wake(self) -> None:
        """Ask for a checkpoint now (a no-op while one is already asked for)."""
        if self._wake.locked():
            self._wake.release()

    def on_commit(self, conn: apsw.Connection, name: str, pages: int) -> int:
        """SQLite's WAL hook on a worker connection: runs after each commit with the log's length."""
        try:
            if pages >= BACKSTOP_PAGES:
                conn.wal_checkpoint(name, apsw.SQLITE_CHECKPOINT_PASSIVE)
            elif pages >= self.pages:
                self.wake()
        except apsw.BusyError:
            pass  # another connection is checkpointing
        except apsw.Error as exc:  # the commit happened: an error here must not fail the request
            self.reports.append(Report(f"inline WAL checkpoint of {self.path} failed: {exc}"))
        return apsw.SQLITE_OK

    def _run(self) -> None:
        con = None
        # Workers started together check at different times: each check reads the whole file.
        next_check = time.monotonic() + self.first_check * (1 + random.random())
        try:
            while self._running:
                wait = max(0.0, min(1.0, next_check - time.monotonic()))
                woken = self._wake.acquire(True, wait)
                if not self._running:
                    return
                try:
                    if con is None:
                        con = sqlite.connect(self.path, create=False)
                    if woken:
                        self._checkpoint(con)
                    if self.check_every and time.monotonic() >= next_check:
                        next_check = time.monotonic() + self.check_every  # a failing check is not redone at once
                        self._quick_check(con)
                except (apsw.CorruptError, apsw.NotADBError) as exc:  # damage too bad to list
                    self._damaged(str(exc))
                    con = self._reset(con)
                except Exception as exc:  # the thread must outlive any error: it is the log's only checkpointer
                    self.reports.append(Report(f"upkeep of {self.path} failed: {type(exc).__name__}: {exc}"))
                    con = self._reset(con)
        finally:
            if con is not None:
                con.close()
            self._alive = False

    @staticmethod
    def _reset(con: apsw.Connection | None) -> None:
        """Drop a connection that failed (the next round opens a new one), after a pause."""
        if con is not None:
            con.close()
        _sleep(ERROR_PAUSE_SECONDS)  # a broken database or disk: retry, without flooding the log
        return None

    def _checkpoint(self, con: apsw.Connection) -> None:
        # PASSIVE never blocks writers; busy means a checkpoint is running elsewhere. (The pragma,
        # not Connection.wal_checkpoint: a new connection learns the database is in WAL mode from it.)
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if not busy:
            self.checkpoints += 1
        _sleep(self.spacing)

    def _quick_check(self, con: apsw.Connection) -> None:
        found = [row[0] for row in con.execute("PRAGMA quick_check")]
        if found == ["ok"]:
            self.integrity_failure = None
            return
        self._damaged("; ".join(found))

    def _damaged(self, finding: str) -> None:
        """Keep the failure for /healthz and report it as critical."""
        self.integrity_failure = finding[:1000]
        self.reports.append(Report(f"SQLite quick_check of {self.path} FAILED: {self.integrity_failure}. "
                                   "Stop the gateway and run `flask --app app db check`.", critical=True))


_upkeep: dict[tuple[int, str], Upkeep] = {}  # (pid, absolute path): this process's threads


def start_upkeep(path: str, **settings) -> Upkeep:
    """This process's upkeep thread for the database at `path`, started on the first call."""
    key = (os.getpid(), os.path.abspath(path))
    if key not in _upkeep or not _upkeep[key].alive:
        _upkeep[key] = Upkeep(path, **settings)
        _upkeep[key].start()
    return _upkeep[key]


def stop_upkeep(path: str) -> None:
    """Stop this process's thread for `path`, if any."""
    upkeep = _upkeep.pop((os.getpid(), os.path.abspath(path)), None)
    if upkeep is not None:
        upkeep.stop()


def integrity_failure(path: str) -> str | None:
    """What the last quick check of `path` in this process found wrong; None if it passed or has not run."""
    upkeep = _upkeep.get((os.getpid(), os.path.abspath(path)))
    return upkeep.integrity_failure if upkeep is not None else None


def take_reports() -> list[Report]:
    """What every upkeep thread of this process met since the last call (for the reaper to log)."""
    out = []
    for key, upkeep in list(_upkeep.items()):
        if key[0] == os.getpid():
            while upkeep.reports:
                out.append(upkeep.reports.popleft())
    return out
