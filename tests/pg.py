"""Throw-away PostgreSQL databases (and Redis key prefixes) on 127.0.0.1 for scale-out tests.

Each database is named kyma_test_<random>, created through the `test` database as user postgres
(as a copy of a schema template when asked), and dropped WITH (FORCE) on a background thread when
its block ends (or when the session ends, for `backend_env`'s and the templates).
"""

from __future__ import annotations

import atexit
import sys
import contextlib
import os
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
ADMIN_DSN = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=test connect_timeout=2"
REDIS_URL = "redis://127.0.0.1:6379/0"
# `make test` sets this to "postgres" for its second pass (see backend_env).
BACKEND_VARIABLE = "KYMA_TEST_BACKEND"


def postgres_pass() -> bool:
    """Whether this is the PostgreSQL pass (KYMA_TEST_BACKEND=postgres) rather than the SQLite one."""
    return os.environ.get(BACKEND_VARIABLE, "sqlite") == "postgres"


def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it answers."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed: {exc}"
    try:
        psycopg.connect(ADMIN_DSN, autocommit=True).close()
    except psycopg.OperationalError as exc:
        return f"PostgreSQL on {PG_HOST}:{PG_PORT} (database 'test', user {PG_USER}) does not answer: {exc}"
    return None


def redis_unavailable() -> str | None:
    """Why Redis cannot be used here, or None when it answers."""
    try:
        import redis
    except ImportError as exc:
        return f"redis is not installed: {exc}"
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis on 127.0.0.1:6379 does not answer: {exc}"
    finally:
        client.close()
    return None


def _admin():
    import psycopg

    return psycopg.connect(ADMIN_DSN, autocommit=True)


def create_database(tag: str = "", template: str = "") -> str:
    """Create a uniquely named database (kyma_test_<tag><random>), a copy of `template` (a database
    name) when given, and return its postgresql:// URL."""
    name = f"kyma_test_{tag}{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def drop_database(url: str) -> None:
    """Drop the database a create_database() URL names, closing whatever still uses it."""
    name = url.rsplit("/", 1)[1]
    if not name.startswith("kyma_test_"):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def connection_count(url: str) -> int:
    """How many server connections are open on the database `url` names."""
    with _admin() as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                             (url.rsplit("/", 1)[1],)).fetchone()[0]


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of one read-only query against the test database `url` names."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        return con.execute(sql, params).fetchall()


@contextlib.contextmanager
def database(template: str = "") -> Iterator[str]:
    """A fresh database (a copy of `template` when given) for the block; dropped afterwards, while
    the tests go on (drop_made waits for it)."""
    url = create_database(template=template)
    try:
        yield url
    finally:
        _drop_in_background(url)


_dropper: list[ThreadPoolExecutor] = []  # one thread, made on first use
_dropping: list[Future] = []


def _drop_in_background(url: str) -> None:
    """Drop a database on a background thread: the server's work for the drop (a checkpoint, removing
    files) need not hold up the next test, which never sees this database."""
    if not _dropper:
        _dropper.append(ThreadPoolExecutor(1, thread_name_prefix="pg-drop"))
    _dropping.append(_dropper[0].submit(drop_database, url))


def _wait_for_drops() -> None:
    """Wait for the background drops; report (not raise) those that failed."""
    while _dropping:
        exc = _dropping.pop(0).exception()
        if exc is not None:
            print(f"could not drop a test database: {exc}", file=sys.stderr)


def new_redis_prefix() -> str:
    """A key prefix no other run uses."""
    return f"kyma-test-{uuid.uuid4().hex[:12]}:"


def delete_redis_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every Redis key under `prefix`."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


_made: list[tuple[str, str]] = []  # backend_env's databases and Redis prefixes, not dropped yet
_templates: dict[str, str] = {}  # this process's schema templates: a database name by what made it


def schema_template(key: str, make_schema) -> str:
    """The name of a database this process made once with `make_schema(url)`, to copy as a template:
    copying a database is cheaper than creating every table again (dropped with drop_made)."""
    if key not in _templates:
        url = create_database("tmpl_")
        try:
            make_schema(url)  # must close its connections: a template being used cannot be copied
        except BaseException:
            _drop_in_background(url)
            raise
        _templates[key] = url.rsplit("/", 1)[1]
    return _templates[key]


def drop_made() -> None:
    """Drop the databases and Redis prefixes backend_env made in this process, and its schema templates.
    The test session calls this when it finishes, not leaving it to exit handlers."""
    _wait_for_drops()
    while _templates:
        _, name = _templates.popitem()
        try:
            drop_database(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}")
        except Exception as exc:  # one that fails must not keep the others
            print(f"could not clean up {name}: {exc}", file=sys.stderr)
    while _made:
        url, prefix = _made.pop()
        for cleanup, what in ((drop_database, url), (delete_redis_prefix, prefix)):
            try:
                cleanup(what)
            except Exception as exc:  # one that fails must not keep the others
                print(f"could not clean up {what}: {exc}", file=sys.stderr)


def backend_env() -> dict[str, str]:
    """Gateway variables for the backend KYMA_TEST_BACKEND names: {} for SQLite (the default), or a
    fresh PostgreSQL database and Redis prefix (cleaned up at exit) for "postgres"."""
    if not postgres_pass():
        return {}
    reason = postgres_unavailable() or redis_unavailable()
    if reason:
        raise RuntimeError(f"{BACKEND_VARIABLE}=postgres but {reason}")
    url, prefix = create_database("pass_"), new_redis_prefix()
    if not _made:
        atexit.register(drop_made)  # a plain process; pytest (and its xdist workers) calls it at session end
    _made.append((url, prefix))
    return {"KYMA_DATABASE_URL": url, "KYMA_REDIS_URL": REDIS_URL, "KYMA_REDIS_PREFIX": prefix,
            "KYMA_DATABASE_POOL_SIZE": "8"}
