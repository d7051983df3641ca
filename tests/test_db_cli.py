"""`flask --app app db check|backup`, and /healthz after a failed background check.

Each command's real command line is checked once; the other runs are answered in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kyma import sqlite, wal
from tests.servers import ROOT, flask_cli, flask_here
from tests.test_credits_cli import cli_env, env_for  # noqa: F401 — a fixture

WRITER = """
import sys, time
from kyma import sqlite
con = sqlite.connect(sys.argv[1])
con.execute("PRAGMA journal_mode=wal")
con.execute("CREATE TABLE IF NOT EXISTS filler (n INTEGER, pad TEXT)")
n = 0
while True:
    with con:
        for _ in range(50):
            n += 1
            con.execute("INSERT INTO filler VALUES (?, ?)", (n, "x" * 500))
    if n == 50:
        print("committing", flush=True)  # one transaction is in, and the next ones follow
"""


def fill_bulk(path: Path, rows: int) -> None:
    """A table and an index big enough for damage to land in them."""
    con = sqlite.connect(str(path))
    con.execute("CREATE TABLE bulk (k TEXT)")
    con.execute("CREATE INDEX bulk_k ON bulk (k)")
    with con:
        for i in range(rows):
            con.execute("INSERT INTO bulk VALUES (?)", (f"key-{i:08d}-" + "x" * 40,))
    con.close()


def scribble(path: Path, first_fraction: float = 0.5) -> None:
    """Overwrite the inside of the file's later pages, as a broken disk or a lost lock would."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        for offset in range(int(size * first_fraction), size - 4096, 2048):
            f.seek(offset + 200)
            f.write(os.urandom(300))


def test_init_db_makes_a_database_that_db_check_passes(tmp_path):
    env = env_for(tmp_path)
    made = flask_cli(env, "init-db")
    assert made.returncode == 0, made.stderr
    done = flask_cli(env, "db", "check")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["integrity", "ok", "ledger", "ok"]


def test_db_check_exits_1_naming_the_damage_of_a_corrupt_file(cli_env, tmp_path):
    db = tmp_path / "kyma.db"
    fill_bulk(db, 4000)
    scribble(db)
    done = flask_here(cli_env, "db", "check")
    assert done.returncode == 1
    assert "integrity failed" in done.stdout and "integrity: " in done.stderr
    assert "Traceback" not in done.stderr


def test_db_check_exits_1_on_a_ledger_that_disagrees_with_itself(cli_env, tmp_path):
    assert flask_here(cli_env, "init-db").returncode == 0
    con = sqlite.connect(str(tmp_path / "kyma.db"))
    con.execute("INSERT INTO account (email, password_hash, balance_micros, lifetime_purchased_micros, tier, "
                "created_at) VALUES ('a@example.com', 'x', 5, 0, 0, '2026-01-01 00:00:00')")
    con.close()
    done = flask_here(cli_env, "db", "check")
    assert done.returncode == 1
    assert "integrity ok" in done.stdout and "ledger: " in done.stderr and "a@example.com" in done.stderr


def test_db_backup_copies_a_database_being_written_into_one_sound_file(cli_env, tmp_path):
    live = tmp_path / "kyma.db"
    fill_bulk(live, 2000)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(live)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "committing"  # and goes on while the backup copies
        done = flask_cli(cli_env, "db", "backup", str(tmp_path / "copy.db"))
    finally:
        writer.kill()
        writer.wait()
    assert done.returncode == 0, done.stderr
    assert "integrity ok" in done.stdout
    copy = tmp_path / "copy.db"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("copy")) == ["copy.db"]  # one file
    assert sqlite.integrity_problems(str(copy)) == []
    con = sqlite.connect(str(copy))
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert con.execute("SELECT count(*) FROM bulk").fetchone()[0] == 2000
    filler = con.execute("SELECT count(*) FROM filler").fetchone()[0]
    assert filler >= 50 and filler % 50 == 0  # what was committed before, in whole transactions only
    con.close()
    restored = {**cli_env, "KYMA_DATABASE_URL": f"sqlite:///{copy}"}
    assert flask_here(restored, "db", "check").returncode == 0  # restoring is using the copy as the database


def test_db_backup_and_check_never_create_a_missing_database(cli_env, tmp_path):
    env = {**cli_env, "KYMA_DATABASE_URL": f"sqlite:///{tmp_path / 'nowhere.db'}"}
    done = flask_here(env, "db", "backup", str(tmp_path / "copy.db"))
    assert done.returncode == 1 and "no database" in done.stderr
    assert flask_here(env, "db", "check").returncode == 1
    assert not (tmp_path / "nowhere.db").exists() and not (tmp_path / "copy.db").exists()


def test_db_backup_into_a_missing_directory_says_so(cli_env, tmp_path):
    done = flask_here(cli_env, "db", "backup", str(tmp_path / "backups" / "copy.db"))
    assert done.returncode == 1 and "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_db_backup_never_overwrites_a_file(cli_env, tmp_path):
    existing = tmp_path / "keep.db"
    existing.write_bytes(b"precious")
    done = flask_here(cli_env, "db", "backup", str(existing))
    assert done.returncode == 1 and "exists" in done.stderr
    assert existing.read_bytes() == b"precious"


@pytest.mark.postgres
def test_db_backup_on_postgresql_says_how_instead(cli_env):
    from tests.pg import database, postgres_unavailable

    if postgres_unavailable():
        pytest.skip(postgres_unavailable())
    with database() as url:
        env = {**cli_env, "KYMA_DATABASE_URL": url}
        assert flask_here(env, "init-db").returncode == 0
        done = flask_here(env, "db", "backup", "/tmp/never-written.db")
        assert done.returncode == 1 and "pg_dump" in done.stderr
        check = flask_here(env, "db", "check")
        assert check.returncode == 0 and "ledger ok" in check.stdout


def test_healthz_reports_a_failed_background_check(client, app, monkeypatch):
    path = app.extensions["kyma"].settings.database_url.split(":///", 1)[1]
    failed = wal.Upkeep(path)  # not started: stands for the worker's thread after a failed check
    failed.integrity_failure = "row 7 missing from index hold_open"
    monkeypatch.setitem(wal._upkeep, (os.getpid(), os.path.abspath(path)), failed)
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.get_json() == {"status": "error", "database": "ok", "integrity": "failed"}
    failed.integrity_failure = None  # the next check passed
    assert client.get("/healthz").status_code == 200
