"""SQLite upkeep: checkpoints woken by the WAL hook, the background quick check, and SQLite's locks kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import apsw
import pytest

from kyma import sqlite, wal


@pytest.fixture()
def upkeep():
    """wal.Upkeep(path, ...) started, and stopped after the test."""
    started = []

    def start(path, **settings):
        u = wal.Upkeep(str(path), **settings)
        u.start()
        started.append(u)
        return u

    yield start
    for u in started:
        u.stop()


def hooked(path, upkeep_or_hook) -> apsw.Connection:
    """A WAL connection to `path` whose commits call the upkeep's hook, as a worker's does."""
    con = sqlite.connect(str(path))
    con.execute("PRAGMA journal_mode=wal")
    con.set_wal_hook(getattr(upkeep_or_hook, "on_commit", upkeep_or_hook))
    con.execute("CREATE TABLE IF NOT EXISTS t (b BLOB)")
    return con


def fill(con: apsw.Connection, rows: int) -> None:
    """Commit `rows` rows of 4000 random bytes, one commit each (a page or two per row)."""
    for _ in range(rows):
        con.execute("INSERT INTO t VALUES (?)", (os.urandom(4000),))


def counted(monkeypatch, obj, name: str) -> list:
    """Wrap obj.name so that each call is counted (appended to the list returned), and still made."""
    calls, original = [], getattr(obj, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


def wait_for(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_a_long_log_wakes_the_thread_which_copies_it_into_the_database(tmp_path, upkeep):
    path = tmp_path / "w.db"
    u = upkeep(path, pages=100, spacing=0.01, first_check=3600)
    con = hooked(path, u)
    fill(con, 300)
    assert wait_for(lambda: u.checkpoints >= 1 and os.path.getsize(path) >= 1_000_000)
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 300


def test_a_short_log_is_left_for_later(tmp_path, monkeypatch):
    path = tmp_path / "short.db"
    u = wal.Upkeep(str(path), pages=200)  # not started: the hook's requests are counted, not served
    asked = counted(monkeypatch, u, "wake")
    con = hooked(path, u)
    fill(con, 50)  # about 150 pages of log
    assert asked == [] and os.path.getsize(path) < 100_000  # no sync for a few pages
    fill(con, 30)  # past 200 pages: the thread is asked for a checkpoint
    assert asked
    con.close()


def test_the_hook_checkpoints_by_itself_when_the_thread_falls_far_behind(tmp_path, monkeypatch):
    path = tmp_path / "backstop.db"
    monkeypatch.setattr(wal, "BACKSTOP_PAGES", 100)
    u = wal.Upkeep(str(path))  # never started: a stalled thread
    con = hooked(path, u)
    fill(con, 300)
    assert os.path.getsize(path) >= 200 * 4000  # copied by the committing connection itself
    assert u.reports == wal.deque()


def test_a_failing_hook_never_fails_the_commit_it_follows(tmp_path, monkeypatch):
    path = tmp_path / "hook.db"
    u = wal.Upkeep(str(path), pages=1)

    def broken_wake():
        raise apsw.IOError("disk on fire")

    monkeypatch.setattr(u, "wake", broken_wake)
    con = hooked(path, u)
    fill(con, 3)
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 3
    assert "disk on fire" in u.reports[0].message


def corrupt(path) -> None:
    """Scribble over the middle of the file's index pages (the database must be closed)."""
    con = sqlite.connect(str(path))
    con.execute("PRAGMA journal_mode=delete")
    con.execute("CREATE TABLE c (k TEXT)")
    con.execute("CREATE INDEX c_k ON c (k)")
    with con:
        for i in range(3000):
            con.execute("INSERT INTO c VALUES (?)", (f"key-{i:06d}-" + "x" * 40,))
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    with open(path, "r+b") as f:
        for page in range(pages // 2, pages - 2):
            f.seek(page * page_size + 100)
            f.write(os.urandom(200))


def test_a_failed_quick_check_is_kept_for_healthz_and_reported_as_critical(tmp_path, upkeep):
    path = tmp_path / "bad.db"
    corrupt(path)
    u = upkeep(path, check_every=3600, first_check=0)
    assert wait_for(lambda: u.integrity_failure is not None)
    reports = list(u.reports)
    assert reports and reports[0].critical and "quick_check" in reports[0].message and "db check" in reports[0].message


def test_a_sound_database_passes_its_quick_check(tmp_path, upkeep, monkeypatch):
    path = tmp_path / "good.db"
    con = hooked(path, lambda *a: 0)
    fill(con, 20)
    u = wal.Upkeep(str(path), check_every=0.01, first_check=0)
    checks = counted(monkeypatch, u, "_quick_check")
    u.start()
    try:
        assert wait_for(lambda: len(checks) >= 2)  # a hang guard: the checks did run, twice
    finally:
        u.stop()
    assert u.integrity_failure is None and not u.reports


CHILD = """
import sys
from kyma import sqlite
con = sqlite.connect(sys.argv[1])
con.set_busy_timeout(100)  # the reader below never lets go: waiting the usual seconds for it proves nothing
with con:
    con.execute("INSERT INTO t VALUES (zeroblob(4000))")
busy, log, done = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
print(busy, log, done)
"""


def test_the_upkeep_thread_leaves_the_locks_of_this_process_readers_alone(tmp_path, monkeypatch):
    """A reader here pins its snapshot, so another process cannot restart the log under it; the
    upkeep thread's own connections (opened, used, closed) must not drop that reader's locks."""
    path = tmp_path / "locks.db"
    writer = hooked(path, lambda *a: 0)
    fill(writer, 50)
    reader = sqlite.connect(str(path))
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 50  # holds a read lock from here on
    fill(writer, 10)
    u = wal.Upkeep(str(path), pages=1, spacing=0.01, check_every=0.01, first_check=0)
    # Checkpoints and quick checks, each on a connection the thread opened (the reader keeps a
    # checkpoint from finishing, so the attempts are counted, not u.checkpoints).
    checkpoints, checks = counted(monkeypatch, u, "_checkpoint"), counted(monkeypatch, u, "_quick_check")
    u.start()
    u.wake()
    assert wait_for(lambda: checkpoints and len(checks) >= 2)
    u.stop()
    assert wait_for(lambda: not u.alive)
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    busy, log, done = map(int, out.stdout.split())
    assert busy == 1 and log > 0  # the reader still holds its place: the log was not truncated
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 50
    reader.execute("COMMIT")


def test_a_stopped_thread_ends(tmp_path):
    path = str(tmp_path / "stop.db")
    sqlite.connect(path).close()
    u = wal.start_upkeep(path, spacing=0.01)
    assert u.alive and wal.start_upkeep(path) is u  # once per process and file
    wal.stop_upkeep(path)
    assert wait_for(lambda: not u.alive, 5)


def test_a_file_too_damaged_to_check_is_a_failed_check_too(tmp_path, upkeep):
    path = tmp_path / "wrecked.db"
    con = hooked(path, lambda *a: 0)
    fill(con, 20)
    con.close()
    with open(path, "r+b") as f:
        f.write(os.urandom(100))  # the header: SQLite no longer knows the file
    u = upkeep(path, check_every=3600, first_check=0)
    assert wait_for(lambda: u.integrity_failure is not None)
    assert u.reports[0].critical
