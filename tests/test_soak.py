"""Gateway workers sharing one database under sustained mixed load leave it sound (bench/soak.py, shortened).

Each run drives plain and streamed chat completions, Anthropic messages, key creation and
revocation, credit purchases and `ledger reap` from the command line against real gunicorn
workers, then stops them and checks the database they left: SQLite's integrity check, `flask
ledger check`, and every success the clients saw against its request-log row and ledger entry.
In the PostgreSQL pass of `make test` the same load runs on PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import pg
from tests.servers import ROOT

# The load is a number of calls, not of seconds, so that it costs the same work on any machine (the
# seconds only guard against a hang: the test fails if they cut the load short). On SQLite, enough calls to corrupt the file with the WAL-index
# bug of old in every run seen, where a few hundred did not every time. That bug was SQLite's own: on
# PostgreSQL the load only needs four workers' writes to contend for the same accounts and keys, which
# they do from the first calls. The soak's minimums of purchases and reaps are made however short it is.
CALLS = {"sqlite": 1500, "postgres": 600}
MAX_SECONDS = 300


def soak(calls: int, *args: str) -> tuple[dict, str]:
    """Run the soak; its JSON summary and its stderr."""
    done = subprocess.run([sys.executable, "-m", "bench.soak", "--calls", str(calls), "--seconds", str(MAX_SECONDS),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=MAX_SECONDS + 600)
    assert done.stdout, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr


# Four workers: the most processes sharing the file that `make soak` tries (it runs 2 and 4, for minutes).
@pytest.mark.integration
@pytest.mark.parametrize("workers", [4])
def test_workers_sharing_one_database_under_load_leave_it_sound(workers):
    backend: list[str] = []
    url = ""
    if pg.postgres_pass():
        url = pg.create_database("soak_")
        backend = ["--database-url", url, "--redis-url", pg.REDIS_URL]
    try:
        calls = CALLS["postgres" if url else "sqlite"]
        result, stderr = soak(calls, "--workers", str(workers), *backend)
    finally:
        if url:
            pg.drop_database(url)
    # The soak's own checks include the load's: all its calls made (the time cap cut none short),
    # every writer succeeded, the minimums of purchases and reaps, no client left unfinished.
    assert result["problems"] == [], stderr
    assert result["ok"] and result["calls"] >= calls
