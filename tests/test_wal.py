"""The background WAL checkpointer: it moves a long log into the database file by itself."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from kyma import wal


@pytest.fixture()
def start():
    """wal.start_checkpointer, with every thread it starts stopped after the test."""
    paths = []

    def start_checkpointer(path, **kw):
        paths.append(str(path))
        return wal.start_checkpointer(str(path), **kw)

    yield start_checkpointer
    for path in paths:
        wal.stop_checkpointer(path)


def test_the_checkpoint_thread_copies_the_log_into_the_database_once_it_is_long(tmp_path, start):
    path = str(tmp_path / "w.db")
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA wal_autocheckpoint=0")  # as a worker's connection leaves it to the thread
    con.execute("CREATE TABLE t (b BLOB)")
    for _ in range(300):
        con.execute("INSERT INTO t VALUES (?)", (os.urandom(4000),))
    assert os.path.getsize(path) < 100_000  # everything so far sits in the log
    assert wal.backlog(path) >= 300  # a page per row at least, read from the WAL index
    assert start(path, interval=0.05, pages=100)
    assert not start(path, interval=0.05, pages=100)  # once per process and file
    deadline = time.monotonic() + 10
    while os.path.getsize(path) < 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.getsize(path) >= 1_000_000
    assert wal.backlog(path) == 0
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 300
    assert [e for e in wal.take_errors() if path in e] == []  # other tests' threads may report theirs
    con.close()


def test_a_failing_checkpoint_is_reported_not_swallowed(tmp_path, start):
    path = tmp_path / "not-a-database.db"
    path.write_bytes(b"this is not an SQLite file" * 100)
    (tmp_path / "not-a-database.db-shm").write_bytes(bytes(128))
    wal.take_errors()
    assert start(str(path), interval=0.05, pages=0)  # try at every tick
    deadline = time.monotonic() + 10
    errors = []
    while not errors and time.monotonic() < deadline:
        time.sleep(0.05)
        errors = wal.take_errors()
    assert errors and "not-a-database.db" in errors[0] and "failed" in errors[0]


def test_a_short_log_is_left_for_later(tmp_path, start):
    path = str(tmp_path / "short.db")
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE t (b BLOB)")
    for _ in range(50):
        con.execute("INSERT INTO t VALUES (?)", (os.urandom(4000),))
    assert start(path, interval=0.02, pages=1000)
    time.sleep(0.3)
    assert wal.backlog(path) >= 50 and os.path.getsize(path) < 100_000  # no sync for a few pages
    con.close()


def test_a_stopped_checkpointer_thread_ends(tmp_path):
    path = str(tmp_path / "stop.db")
    sqlite3.connect(path).close()
    assert wal.start_checkpointer(path, interval=0.02)
    assert wal.thread_alive(path)
    wal.stop_checkpointer(path)
    deadline = time.monotonic() + 5
    while wal.thread_alive(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not wal.thread_alive(path)
