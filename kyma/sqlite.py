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

from datetime import date
from typing import Callable

import apsw
from playhouse.apsw_ext import APSWDatabase

PRAGMAS = {
    # Before WAL and the first table, so only a new database takes it (an existing one keeps its
    # size): half SQLite's default page halves the bytes every commit writes to the log, which
    # measured −0.14 ms CPU a request and +9 % req/s. Rows stay far below the 2013 bytes a page
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
    """Bind datetimes and dates as the ISO text Python's sqlite3 module wrote (and peewee reads back)."""
    if isinstance(value, date):  # datetime is a date too
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} in SQLite (parameter {number})")


class SqliteDatabase(APSWDatabase):
    """peewee's APSW database whose connections bind datetimes the way the stored rows hold them.

    With a `wal_hook`, SQLite calls it after each commit instead of checkpointing by itself.
    """

    def __init__(self, path: str, wal_hook: WalHook | None = None, **kwargs):
        self.wal_hook = wal_hook
        super().__init__(path, **kwargs)

    def _connect(self):
        conn = super()._connect()
        conn.convert_binding = bind_as_text
        if self.wal_hook is not None:
            conn.set_wal_hook(self.wal_hook)
        return conn


def open_database(path: str, **kwargs) -> SqliteDatabase:
    """The SQLite database at `path` (opened lazily), with the gateway's pragmas."""
    return SqliteDatabase(path, pragmas=PRAGMAS, **kwargs)


def connect(path: str, timeout_ms: int = 5000) -> apsw.Connection:
    """A plain APSW connection to `path` outside peewee (background checks, backups)."""
    con = apsw.Connection(path)
    con.set_busy_timeout(timeout_ms)
    return con

