"""Gateway workers sharing one database under sustained mixed load leave it sound (bench/soak.py, shortened).

Each run drives plain and streamed chat completions, Anthropic messages, key creation and
revocation, credit purchases and `ledger reap` from the command line against real gunicorn
workers, then stops them and checks the database they left: SQLite's integrity check, `flask
ledger check`, and every success the clients saw against its request-log row and ledger entry.
In the PostgreSQL pass of `make test` the same load runs on PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import pg
from tests.servers import ROOT

# On SQLite, long enough to corrupt the file with the WAL-index bug of old, in every run seen. That bug
# was SQLite's own; on PostgreSQL the same checks follow a shorter load (the soak saturates both cores
# for as long as it runs, and its minimums of purchases and reaps are made however short it is).
SECONDS = {"sqlite": 25, "postgres": 10}
KINDS = ("chat", "chat_stream", "messages", "key_create", "key_revoke", "revoked_key_refused")


def soak(seconds: int, *args: str) -> tuple[dict, str]:
    """Run the soak; its JSON summary and its stderr."""
    done = subprocess.run([sys.executable, "-m", "bench.soak", "--seconds", str(seconds), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=seconds + 600)
    assert done.stdout, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr


# Four workers: the most processes sharing the file that `make soak` tries (it runs 2 and 4, for minutes).
@pytest.mark.integration
@pytest.mark.parametrize("workers", [4])
def test_workers_sharing_one_database_under_load_leave_it_sound(workers):
    backend: list[str] = []
    url = ""
    kind = "postgres" if os.environ.get(pg.BACKEND_VARIABLE) == "postgres" else "sqlite"
    if kind == "postgres":
        url = pg.create_database("soak_")
        backend = ["--database-url", url, "--redis-url", pg.REDIS_URL]
    try:
        result, stderr = soak(SECONDS[kind], "--workers", str(workers), *backend)
    finally:
        if url:
            pg.drop_database(url)
    assert result["problems"] == [], stderr
    assert result["ok"] and result["unfinished_clients"] == 0
    for kind in KINDS:  # the load really exercised every writer
        assert result["by_kind"][kind].get("200", 0) + result["by_kind"][kind].get("201", 0) > 0, kind
    assert result["purchases"] >= 3 and result["reaps"] >= 2  # the soak's minimums, made however slow the machine
