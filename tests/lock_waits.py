"""Lock-order checks on PostgreSQL: a write that waits for one row must not hold another meanwhile."""

from __future__ import annotations

import threading
import time

import psycopg

from kyma.db import database


def _lock(table: str, *, nowait: bool = False) -> str:
    return f'SELECT "id" FROM "{table}" WHERE "id" = %s FOR UPDATE' + (" NOWAIT" if nowait else "")


def waits_on_lock_only_at_the_lower(url: str, low: int, high: int, write, *, first: str = "account",
                                    then: str = "account") -> None:
    """Another session locks row `low` of table `first`; `write` (in a thread) must wait there holding no
    lock on row `high` of table `then`, which a third session then takes without waiting: whoever holds
    `high` and wants `low` can never wait on it in turn, so the two cannot deadlock."""
    backend: list[int] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            backend.append(database.obj.execute_sql("SELECT pg_backend_pid()").fetchone()[0])
            write()
        except BaseException as exc:
            failure.append(exc)
        finally:
            database.obj.close()

    with psycopg.connect(url) as blocker, psycopg.connect(url, autocommit=True) as probe:
        blocker.execute(_lock(first), (low,))  # open until the rollback below
        thread = threading.Thread(target=run)
        thread.start()
        waiting, deadline = None, time.monotonic() + 30  # a bound on the polling, not a timing claim
        while waiting != "Lock" and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.01)
            if backend:
                waiting = probe.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                        backend).fetchone()[0]
        assert waiting == "Lock", f"the write never waited for the lock on {low}: {failure}"
        try:
            probe.execute(_lock(then, nowait=True), (high,))
        finally:
            blocker.rollback()
            thread.join(30)
    assert not failure, failure
