"""SQLite WAL checkpoints in a background OS thread, off the request path.

By default, the commit that takes SQLite's write-ahead log past 1000 pages also copies the log
back into the database and fsyncs both files (with synchronous=NORMAL, checkpoints are the only
syncs): about one request in forty paid several milliseconds for everyone's writes. With this
thread the bench's p99 at concurrency 1 fell from 6.9 to 3.2 ms and 32 connections got 8 % more
requests through (bench/compare.py; docs/benchmarks.md).

A gevent worker leaves automatic checkpoints to a backstop far above the normal log size and runs
a thread that keeps SQLite's own policy: every CHECK_SECONDS it reads how many log frames are not
yet in the database (from the WAL index, the -shm file) and from CHECKPOINT_PAGES on runs a
PASSIVE checkpoint on its own connection. Checkpointing on a plain timer synced the files several
times a second at any load, and checking ten times a second cost measurable CPU at low load. It is
a real thread: sqlite3 releases the GIL while it copies and syncs, so the greenlets keep serving.
Durability is unchanged: the same syncs, at checkpoint time.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from collections import deque

from gevent.monkey import get_original

CHECK_SECONDS = 0.5
CHECKPOINT_PAGES = 1000  # SQLite's own wal_autocheckpoint default
# The worker connection's own automatic checkpoint, in pages: reached only if this thread stalls
# (at 900 requests a second the log grows by about 10000 pages between two checks).
BACKSTOP_PAGES = 40000

_start_thread = get_original("_thread", "start_new_thread")  # an OS thread, not a greenlet
_sleep = get_original("time", "sleep")
_running: set[tuple[int, str]] = set()  # (pid, file): a thread goes on while its key is here
_alive: set[tuple[int, str]] = set()  # (pid, file): a thread has not ended yet
# The thread must not log (logging's locks are gevent's in a patched worker); the reaper does it.
_errors: deque[str] = deque(maxlen=20)


def start_checkpointer(path: str, interval: float = CHECK_SECONDS, pages: int = CHECKPOINT_PAGES) -> bool:
    """Checkpoint the WAL of the database at `path` from a background thread; once per process and file."""
    key = (os.getpid(), os.path.abspath(path))
    if key in _running:
        return False
    _running.add(key)
    _alive.add(key)
    _start_thread(_checkpoint_while_running, (key, path, interval, pages))
    return True


def stop_checkpointer(path: str) -> None:
    """Let the thread for `path` end after its current wait (tests; a worker's runs until it exits)."""
    _running.discard((os.getpid(), os.path.abspath(path)))


def take_errors() -> list[str]:
    """Errors the checkpoint thread met since the last call (for the caller to log)."""
    out = []
    while _errors:
        out.append(_errors.popleft())
    return out


def backlog(path: str) -> int:
    """Log frames of the database at `path` not yet copied into it: mxFrame - nBackfill (0 without a log).

    The -shm file starts with two copies of the index header (mxFrame at byte 16) and then the
    checkpoint info (nBackfill at byte 96), in native byte order (sqlite.org/walformat.html).
    A torn read only makes this a hint, which is all it is used for.
    """
    try:
        fd = os.open(path + "-shm", os.O_RDONLY)
    except OSError:
        return 0
    try:
        head = os.pread(fd, 100, 0)
    finally:
        os.close(fd)
    if len(head) < 100:
        return 0
    (mx_frame,) = struct.unpack_from("=I", head, 16)
    (backfilled,) = struct.unpack_from("=I", head, 96)
    return max(0, mx_frame - backfilled)


def thread_alive(path: str) -> bool:
    """True while a checkpoint thread for `path` (started by this process) has not ended."""
    return (os.getpid(), os.path.abspath(path)) in _alive


def _checkpoint_while_running(key: tuple[int, str], path: str, interval: float, pages: int) -> None:
    con = None
    try:
        while True:
            _sleep(interval)
            if key not in _running:
                return
            # backlog() opens the index afresh each time: SQLite deletes it when the last connection closes.
            if backlog(path) < pages:
                continue
            try:
                if con is None:
                    con = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
                # PASSIVE never blocks writers; a checkpoint already running elsewhere just makes this one busy.
                con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                _errors.append(f"WAL checkpoint of {path} failed: {exc}")
                if con is not None:
                    con.close()
                    con = None
                _sleep(5)  # a broken database or disk: retry, without flooding the log
    finally:
        if con is not None:
            con.close()
        _alive.discard(key)
