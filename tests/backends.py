"""Throw-away PostgreSQL databases and Redis prefixes on 127.0.0.1 for backend tests (skip if absent)."""

from __future__ import annotations

import contextlib
import uuid

import pytest

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 dbname=test connect_timeout=2"
REDIS_URL = "redis://127.0.0.1:6379/0"


@contextlib.contextmanager
def postgres_url():
    """A fresh, uniquely named database on 127.0.0.1:5432 (dropped afterwards); skips if PG is down."""
    psycopg = pytest.importorskip("psycopg")
    name = f"kyma_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 (database 'test') does not answer: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_prefix():
    """A unique key prefix on the Redis at 127.0.0.1:6379 (its keys deleted afterwards); skips if down."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis on 127.0.0.1:6379 does not answer: {exc}")
    prefix = f"kyma-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
