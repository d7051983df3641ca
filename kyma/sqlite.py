"""SQLite through APSW, which carries its own current SQLite instead of the system's.

Python's sqlite3 module links the system library, and Debian 12's (3.40.1) still has the WAL-reset
race fixed in 3.51.3: a checkpoint that starts just after another one finished, while a third
connection restarts the log, can leave committed pages out of the database. A gateway's workers
are exactly such connections. APSW ships a fixed SQLite and exposes its WAL hook (kyma.wal).

Every SQLite connection a gateway process opens must come from here: two copies of SQLite in one
process keep separate POSIX locks on the same files, and closing a file in one drops the locks the
other holds (sqlite.org's "How To Corrupt An SQLite Database File").
"""

from __future__ import annotations

import os
import time as _time
from contextlib import contextmanager
from datetime import date, time
from decimal import Decimal
from typing import Callable

import apsw
from playhouse.apsw_ext import APSWDatabase

PRAGMAS = {
    # Before WAL and the first table, so only a new database takes it (an existing one keeps its
    # size): half SQLite's default page halves the bytes every commit writes to the log, which
    # is cheaper per request (docs/benchmarks.md). Rows stay far below the 2013 bytes a page
    # holds before overflowing (a request-log row's attempt list is the long one).
    "page_size": 2048,
    "journal_mode": "wal",
    "busy_timeout": 5000,
    # NORMAL keeps every committed row through a killed process; see docs/benchmarks.md.
    "synchronous": "normal",
    "foreign_keys": 1,
}

SQLITE_VERSION = apsw.sqlite_lib_version()
WalHook = Callable[[apsw.Connection, str, int], int]  # (connection, database name, pages in the log)


def bind_as_text(cursor, number: int, value):
    """Bind dates, times and decimals as the text Python's sqlite3 module (with peewee) wrote."""
    if isinstance(value, (date, time, Decimal)):  # datetime is a date too
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} in SQLite (parameter {number})")


BUSY_WAIT_SECONDS = PRAGMAS["busy_timeout"] / 1000


def short_busy_waits(sleep: Callable[[float], None], limit: float = BUSY_WAIT_SECONDS) -> Callable[[int], bool]:
    """A busy handler that retries a lock another process holds every 50 µs, backing off to 1 ms.

    SQLite's own sleeps 1, 2, 5, 10 … ms between tries, while a gateway's write transaction holds
    the lock for a fraction of a millisecond: under gevent the whole worker, every greenlet, sleeps
    with it. `sleep` must really block (never switch greenlets: SQLite is inside a call).
    """
    started = [0.0]

    def handler(tries: int) -> bool:
        if _fail_fast:
            return False
        now = _time.monotonic()
        if tries == 0:
            started[0] = now
        elif now - started[0] >= limit:
            return False  # SQLITE_BUSY, as busy_timeout would
        sleep(min(0.001, 0.00005 * (1 + tries // 8)))
        return True

    return handler


_fail_fast = False


@contextmanager
def fail_fast():
    """Lock waits in the block fail at once ("database is locked") instead of sleeping.

    For a caller that can wait cooperatively instead (gevent.sleep, then retry); the block must
    not switch greenlets, or another greenlet's statements would fail fast too.
    """
    global _fail_fast
    _fail_fast = True
    try:
        yield
    finally:
        _fail_fast = False


class SqliteDatabase(APSWDatabase):
    """peewee's APSW database whose connections bind datetimes the way the stored rows hold them.

    With a `wal_hook`, SQLite calls it after each commit instead of checkpointing by itself; with
    a `busy_sleep` (a blocking sleep), lock waits use short_busy_waits instead of busy_timeout.
    """

    def __init__(self, path: str, wal_hook: WalHook | None = None,
                 busy_sleep: Callable[[float], None] | None = None, **kwargs):
        self.wal_hook = wal_hook
        self.busy_sleep = busy_sleep
        super().__init__(path, **kwargs)

    def _connect(self):
        conn = super()._connect()  # the pragmas ran: busy_timeout is set, and replaced just below
        conn.convert_binding = bind_as_text
        if self.wal_hook is not None:
            conn.set_wal_hook(self.wal_hook)
        if self.busy_sleep is not None:
            conn.set_busy_handler(short_busy_waits(self.busy_sleep))
        return conn


def open_database(path: str, **kwargs) -> SqliteDatabase:
    """The SQLite database at `path` (opened lazily), with the gateway's pragmas."""
    return SqliteDatabase(path, pragmas=PRAGMAS, **kwargs)


def connect(path: str, timeout_ms: int = 5000, create: bool = True) -> apsw.Connection:
    """A plain APSW connection to `path` outside peewee (background checks, backups).

    With create=False a missing file is an error (CantOpenError), never a new empty database.
    """
    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    con = apsw.Connection(path, flags=flags)
    con.set_busy_timeout(timeout_ms)
    return con


def integrity_problems(path: str) -> list[str]:
    """What PRAGMA integrity_check and foreign_key_check find wrong in the database at `path` ([] if sound)."""
    try:
        con = connect(path, create=False)
    except apsw.CantOpenError as exc:
        return [f"there is no database at {path}: {exc}"]
    try:
        found = [row[0] for row in con.execute("PRAGMA integrity_check")]
        problems = [] if found == ["ok"] else found
        problems += [f"{table} row {rowid}: no {parent} row for its foreign key"
                     for table, rowid, parent, _ in con.execute("PRAGMA foreign_key_check")]
        return problems
    except apsw.Error as exc:  # damaged past checking: that is the finding
        return [f"the database cannot be read: {exc}"]
    finally:
        con.close()


def backup(path: str, dest: str) -> int:
    """Copy the live database at `path` into `dest`, a new single file, checked; the pages copied.

    SQLite's online backup copies one consistent snapshot (a read transaction: in WAL mode the
    workers keep writing meanwhile). The copy is written beside `dest` and linked in under its
    name only once its integrity check passed, so `dest` is never a half-written file, and an
    existing file is never replaced. Raises FileExistsError, FileNotFoundError or apsw.Error.
    """
    partial = f"{dest}.partial"
    leftovers = (partial, f"{partial}-wal", f"{partial}-shm", f"{partial}-journal")
    if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
        raise FileNotFoundError(f"no directory for {dest}")
    _remove(leftovers)
    source = connect(path, create=False)
    try:
        copy = connect(partial)
        try:
            with copy.backup("main", source, "main") as job:
                job.step(-1)  # all pages in one step: one snapshot
                pages = job.page_count
            copy.execute("PRAGMA journal_mode=delete")  # one self-contained file, restorable by copying it
            found = [row[0] for row in copy.execute("PRAGMA integrity_check")]
        finally:
            copy.close()
        if found != ["ok"]:
            raise apsw.CorruptError(f"the backup failed its integrity check: {'; '.join(found)[:500]}")
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.link(partial, dest)  # unlike a rename, never replaces a file that appeared meanwhile
        _fsync_directory(dest)
        return pages
    finally:
        source.close()
        _remove(leftovers)


def _remove(paths) -> None:
    for p in paths:
        if os.path.exists(p):
            os.remove(p)


def _fsync_directory(path: str) -> None:
    """Make a new directory entry durable (the backup's name survives a power cut)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
