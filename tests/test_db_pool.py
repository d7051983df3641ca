"""The PostgreSQL pool serves waiters in arrival order and gives every turn back."""

from __future__ import annotations

import threading
import time

import pytest

from kyma.db_pool import Turns


def test_a_freed_turn_goes_to_the_longest_waiter_not_to_a_newcomer():
    turns = Turns(1)
    assert turns.acquire(0.1)
    served: list[str] = []

    def wait(name: str) -> None:
        if turns.acquire(5):
            served.append(name)

    first = threading.Thread(target=wait, args=("first",))
    first.start()
    deadline = time.monotonic() + 5  # only a bound on a hang: "first" queues as soon as it runs
    while not turns.waiting:
        assert time.monotonic() < deadline and first.is_alive(), "the waiter never queued"
        time.sleep(0.001)
    turns.release()  # handed straight to "first": a newcomer finds nothing free
    assert not turns.acquire(0)
    first.join(5)
    assert served == ["first"] and turns.free == 0
    turns.release()
    assert turns.free == 1 and turns.acquire(0)


def test_a_wait_that_runs_out_leaves_the_line_and_the_count_intact():
    turns = Turns(1)
    assert turns.acquire(0)
    assert not turns.acquire(0.01)
    assert not turns.waiting
    turns.release()
    assert turns.free == 1


@pytest.mark.integration
def test_connections_are_given_back_to_their_turns(tmp_path):
    from tests.pg import create_database, drop_database, postgres_unavailable

    if postgres_unavailable():
        pytest.skip(postgres_unavailable())
    from peewee import OperationalError

    from kyma.db import make_database

    url = create_database("pool_")
    try:
        db = make_database(url, 2)
        for _ in range(5):  # more rounds than turns: each close gave its turn back
            db.connect()
            assert db.execute_sql("SELECT 1").fetchone() == (1,)
            db.close()
        assert db._turns.free == 2
        db.connect()
        with pytest.raises(OperationalError, match="already opened"):
            db.connect()  # already open in this thread: refused, and no second turn taken
        assert db._turns.free == 1
        db.close()
        assert db._turns.free == 2
        db.close_all()
    finally:
        drop_database(url)


@pytest.mark.integration
def test_only_a_connection_idle_for_a_while_is_checked_with_a_round_trip(monkeypatch):
    from tests.pg import _admin, create_database, drop_database, postgres_unavailable

    if postgres_unavailable():
        pytest.skip(postgres_unavailable())
    from playhouse.pool import _PooledPostgresqlDatabase

    from kyma import db_pool
    from kyma.db import make_database

    checks = []
    real_check = _PooledPostgresqlDatabase._is_closed
    monkeypatch.setattr(_PooledPostgresqlDatabase, "_is_closed",
                        lambda self, conn: checks.append(conn) or real_check(self, conn))
    url = create_database("pool_")
    try:
        db = make_database(url, 1)
        db.connect()
        backend = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
        db.close()
        db.connect()  # given back moments ago: handed out unchecked
        assert checks == [] and db.execute_sql("SELECT pg_backend_pid()").fetchone()[0] == backend
        db.close()
        with _admin() as admin:  # the server drops it while it sits in the pool
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        monkeypatch.setattr(db_pool, "CHECK_AFTER_IDLE_SECONDS", 0.0)  # as if it had sat idle a while
        db.connect()  # checked: the dead one is replaced, the request gets a working connection
        assert len(checks) == 1 and db.execute_sql("SELECT pg_backend_pid()").fetchone()[0] != backend
        db.close()
        db.close_all()
    finally:
        drop_database(url)


def test_only_an_sqlite_app_opens_a_connection_before_each_request(make_app, backend_db):
    # A pooled connection is taken at a request's first query; the backend is decided once, at creation.
    from kyma.db import open_connection

    app = make_app(database_url=backend_db)
    assert (open_connection in app.before_request_funcs.get(None, [])) == backend_db.startswith("sqlite")
