"""pytest-friendly wrappers over tests/pg.py: a throw-away database or Redis prefix, or a skip."""

from __future__ import annotations

import contextlib

import pytest

from tests import pg

REDIS_URL = pg.REDIS_URL


def _require_postgres() -> None:
    """Skip the test unless PostgreSQL answers on 127.0.0.1:5432."""
    reason = pg.postgres_unavailable()
    if reason:
        pytest.skip(reason)


@contextlib.contextmanager
def postgres_url(template: str = ""):
    """A fresh, uniquely named database on 127.0.0.1:5432 (a copy of `template` when given; dropped
    afterwards); skips if PG is down."""
    _require_postgres()
    with pg.database(template) as url:
        yield url


def _create_tables(url: str) -> None:
    """The gateway's tables created in the database at `url` (the proxy bound to it), its connection closed."""
    from kyma.db import init_db
    from kyma.models import ALL_MODELS

    db = init_db(url)
    try:
        db.create_tables(ALL_MODELS)
    finally:
        db.close()


@contextlib.contextmanager
def _bound(url: str):
    """The proxy bound to the database at `url` for the block; yields the URL."""
    from kyma.db import init_db

    db = init_db(url)
    try:
        yield url
    finally:
        db.close()


@contextlib.contextmanager
def _schema(url: str):
    """The gateway's tables created in the database at `url`, the proxy bound to it; yields the URL."""
    _create_tables(url)
    with _bound(url):
        yield url


@contextlib.contextmanager
def postgres_schema():
    """postgres_url() with the gateway's tables (copied from this process's template of them) and the
    proxy bound to it; yields the URL."""
    _require_postgres()
    with postgres_url(pg.schema_template("gateway", _create_tables)) as url, _bound(url):
        yield url


@contextlib.contextmanager
def redis_prefix():
    """A unique key prefix on the Redis at 127.0.0.1:6379 (its keys deleted afterwards); skips if down."""
    reason = pg.redis_unavailable()
    if reason:
        pytest.skip(reason)
    prefix = pg.new_redis_prefix()
    try:
        yield prefix
    finally:
        pg.delete_redis_prefix(prefix)


@contextlib.contextmanager
def schema_on(kind: str, tmp_path):
    """A fresh database with the gateway's tables, the proxy bound to it: kind is sqlite or postgres."""
    with (postgres_schema() if kind == "postgres" else _schema(f"sqlite:///{tmp_path / 'kyma.db'}")) as url:
        yield url


@pytest.fixture()
def pg_db():
    """A fresh PostgreSQL database with the gateway's tables, the proxy bound to it; skips if PG is down."""
    with postgres_schema() as url:
        yield url
