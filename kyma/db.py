"""The database proxy: SQLite (WAL) by default, PostgreSQL through psycopg 3 when configured."""

from __future__ import annotations

import functools
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

from peewee import DatabaseProxy
from playhouse.db_url import connect

from kyma.greenlets import gevent_patched

# Bound to a real database in init_db(); models refer to the proxy so importing does no I/O.
database = DatabaseProxy()

def is_sqlite(url: str) -> bool:
    """True when the URL names an SQLite database."""
    return url.startswith("sqlite")


# A greenlet waiting for a pooled connection gives up after this long (then the request fails).
POOL_WAIT_SECONDS = 30
# Pooled PostgreSQL connections idle longer than this are replaced (servers and proxies drop them).
POOL_STALE_SECONDS = 300


def make_database(url: str, pool_size: int = 0):
    """Open (lazily) the database a URL names; postgresql:// uses psycopg 3, never psycopg2.

    With `pool_size` > 0 a PostgreSQL database is a per-process pool of at most that many
    connections, so instances × workers × pool_size bounds what the server must accept.
    """
    if is_sqlite(url):
        return _make_sqlite(url.split(":///", 1)[-1].split("?", 1)[0])
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        rest = url.split("://", 1)[1]
        if pool_size > 0:
            from playhouse.db_url import parse

            from kyma.db_pool import FairPooledDatabase

            return FairPooledDatabase(**parse("postgresql://" + rest), autorollback=True, max_connections=pool_size,
                                      timeout=POOL_WAIT_SECONDS, stale_timeout=POOL_STALE_SECONDS)
        url = "psycopg3://" + rest
    return connect(url, autorollback=True)


def _make_sqlite(path: str):
    from kyma import sqlite

    on_disk = bool(path) and path != ":memory:"
    if on_disk:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not gevent_patched():
        return sqlite.open_database(path)
    from kyma import wal  # gevent's: imported only where gevent runs

    # Under gevent every greenlet of a worker shares one SQLite connection: SQLite calls never
    # yield and transactions hold no I/O, so they cannot interleave, and requests skip the connect
    # and close (the last close also checkpoints the WAL) that cost more than the queries
    # themselves (docs/benchmarks.md has the figures). Checkpoints run in a background thread
    # (kyma.wal), woken by the connection's WAL hook, not inside a request's commit.
    from gevent import monkey

    upkeep = wal.start_upkeep(path) if on_disk else None
    # Lock waits block the whole worker, so they are short: the real sleep, not gevent's.
    db = sqlite.open_database(path, thread_safe=False, wal_hook=upkeep.on_commit if upkeep else None,
                              busy_sleep=monkey.get_original("time", "sleep"))
    db.kyma_shared_connection = True
    return db


def init_db(url: str, pool_size: int = 0):
    """Bind the proxy to the database at `url` and return it."""
    db = make_database(url, pool_size)
    database.initialize(db)
    return db


def write_transaction():
    """A write transaction that takes SQLite's write lock up front (no deferred-lock upgrade).

    Inside an open transaction it simply joins it: one commit for the whole unit of work, and no
    SAVEPOINT round trips on the hot path. The contract that follows: an error inside rolls back
    the caller's whole transaction (PostgreSQL refuses every statement after one), so only code
    that is not nested may catch a database error and go on; and no greenlet switch (network I/O,
    sleep) may happen inside, since under gevent SQLite's one connection is shared by every greenlet.
    """
    db = database.obj
    if db.in_transaction():
        return nullcontext()
    return _committing(db, db.atomic("IMMEDIATE") if is_sqlite_db(db) else db.atomic())


@contextmanager
def _committing(db, txn):
    """`txn`, whose after-commit callbacks run also when its COMMIT fails with an unknown outcome.

    The writes may have landed, and peewee drops the callbacks with the failed commit. Ours only
    announce changes (a kept key row changed), where a spare announcement costs a cache refill and a
    missing one lets a revoked key work on. The list is peewee's own (pinned in requirements.txt).
    """
    pending: list = []
    committed = False

    def landed() -> None:
        nonlocal committed
        committed = True

    try:
        with txn:
            yield
            pending = list(db._state.commit_callbacks)  # what leaving the block will commit and announce
            if pending:  # peewee runs the callbacks in order once the COMMIT succeeded: this one first
                db._state.commit_callbacks.insert(0, landed)
    except Exception as exc:
        # Not after a commit that succeeded, whose callbacks peewee ran (one of them raised this, or
        # peewee's ROLLBACK after it).
        if pending and not committed and not wrote_nothing(exc):
            for callback in pending:
                callback()
        raise


@contextmanager
def savepoint():
    """A savepoint in the open transaction: an error inside undoes the block's writes only, then propagates.

    It always has the same name. peewee names each savepoint afresh from a uuid4: a random draw
    (a system call) and two statements SQLite cannot take from its statement cache, per use; a
    name reused by nested savepoints still refers to the innermost one.
    """
    db = database.obj
    db.execute_sql('SAVEPOINT "unit"')
    try:
        yield
    except BaseException:
        db.execute_sql('ROLLBACK TO SAVEPOINT "unit"')
        db.execute_sql('RELEASE SAVEPOINT "unit"')
        raise
    db.execute_sql('RELEASE SAVEPOINT "unit"')


@contextmanager
def pipelined(*local_settings: tuple[str, str]):
    """PostgreSQL: the psycopg connection, whose statements in the block go out pipelined (all sent, then
    every answer read: one round trip) and commit together, as one implicit transaction ends at the
    pipeline's sync; inside an open transaction they join it. `local_settings`: (name, value) pairs that
    last for these statements only. Errors come as peewee's, as from any other query."""
    from peewee import __exception_wrapper__ as as_peewee_error

    db = database.obj
    conn = db.connection()
    outer = db.in_transaction()
    with as_peewee_error, conn.pipeline():
        for name, value in local_settings:
            # A function, not SET LOCAL, which takes effect only inside BEGIN … COMMIT (two more statements).
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
        yield conn
        if outer:  # the caller's transaction goes on with the defaults (as if no SET had run), losing any SET of its own
            for name, _ in local_settings:
                conn.execute(f"SET LOCAL {name} TO DEFAULT")


def shares_connection(db) -> bool:
    """True when every greenlet of this process uses one connection (SQLite under gevent)."""
    return getattr(db, "kyma_shared_connection", False)


def open_connection() -> None:
    """Open this greenlet's (or the shared) connection if it is not open yet."""
    database.obj.connect(reuse_if_open=True)


def close_connection() -> None:
    """Close this greenlet's connection (or return it to the pool); the shared one stays open."""
    db = database.obj
    if not shares_connection(db) and not db.is_closed():
        db.close()


def integrity_failure() -> str | None:
    """What this process's last background quick check of its SQLite database found; None if all is well."""
    db = database.obj
    if not is_sqlite_db(db):
        return None
    from kyma import wal

    return wal.integrity_failure(db.database)


def _sqlstates(exc: BaseException):
    """The SQLSTATEs along an exception's chain, through peewee's wrapping, outermost first."""
    seen: BaseException | None = exc
    while seen is not None:
        for candidate in (seen, *seen.args):
            code = getattr(candidate, "sqlstate", None)
            if code:
                yield code
        seen = seen.__cause__ or seen.__context__


def is_deadlock(exc: BaseException) -> bool:
    """True when PostgreSQL aborted this transaction to break a deadlock (SQLSTATE 40P01): it wrote nothing."""
    return "40P01" in _sqlstates(exc)


def wrote_nothing(exc: BaseException) -> bool:
    """True when the server refused the statement (it answered with an error, so nothing of it was
    committed) or no connection was had; False when the outcome is unknown, as when the connection
    failed while a COMMIT was under way: it may have landed."""
    from playhouse.pool import MaxConnectionsExceeded

    if isinstance(exc, MaxConnectionsExceeded):
        return True
    code = next(_sqlstates(exc), None)
    # Class 08 (connection exception) and 57P (a server shutting down) say the session ended, not that
    # the statement failed; any other SQLSTATE is the server's answer that it rolled the statement back.
    return code is not None and not code.startswith(("08", "57P"))


def is_sqlite_db(db) -> bool:
    """True for a peewee SQLite database object."""
    from peewee import SqliteDatabase

    return isinstance(db, SqliteDatabase)


@contextmanager
def connected():
    """Reuse this greenlet's open connection, or open one for the block and close it afterwards.

    peewee's connection_context() closes even a connection it did not open, which would drop the
    request's connection mid-request; streaming generators run after teardown and need their own.
    """
    db = database.obj
    if not db.is_closed():
        yield db
        return
    db.connect()
    try:
        yield db
    finally:
        close_connection()


def release_connection() -> None:
    """Give this greenlet's connection back (to the pool) before a long wait such as an upstream call.

    The next query reopens one lazily, and teardown closes it; without this a request would hold a
    PostgreSQL connection for the whole upstream call, and concurrency would be capped by
    max_connections instead of by the gateway. SQLite has no such limit, so its connection stays.
    """
    db = database.obj
    if db is None or is_sqlite_db(db):
        return
    if not db.is_closed() and not db.in_transaction():
        db.close()


@functools.cache
def _for_backend(sql: str, param: str) -> str:
    return sql.replace("?", param)


def query(sql: str, *params) -> list[tuple]:
    """Rows of one hot-path statement written with `?` placeholders (rewritten once for PostgreSQL).

    Raw SQL skips peewee's query building, which costs more than SQLite running the statement.
    """
    db = database.obj
    return db.execute_sql(_for_backend(sql, db.param), params).fetchall()


def execute(sql: str, *params) -> int:
    """Run one hot-path statement that returns no rows (written with `?`); the number of rows it changed."""
    db = database.obj
    return db.rows_affected(db.execute_sql(_for_backend(sql, db.param), params))


def as_datetime(value) -> datetime | None:
    """A DateTimeField value read by raw SQL (SQLite gives text, PostgreSQL a datetime)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)
