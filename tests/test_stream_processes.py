"""Streams under load and client disconnects, on a one-worker gateway in front of a slow simulator."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import register
from tests.servers import db_rows, flask_here, start_stack, stop_all

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory):
    """One gevent worker; three simulators answering at 40 tokens/s after 200 ms."""
    wd = tmp_path_factory.mktemp("slow")
    gw, sims = start_stack(wd, {"kyma_sim_latency_ms": 200, "kyma_sim_tokens_per_sec": 40}, workers=1,
                           KYMA_KEEPALIVE_SECONDS=1)
    user = register(gw.url, "load@example.com")
    done = flask_here(gw.env, "credits", "add", "load@example.com", "1000")  # tier 4: 300 requests a minute
    assert done.returncode == 0, done.stderr
    yield gw, user, wd / "kyma.db", gw.env
    stop_all([gw, *sims])


def _stream(url: str, key: str) -> tuple[int, bool, str]:
    r = requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, stream=True,
                      timeout=60, json={"model": "qwen-3-32b", "max_tokens": 40, "stream": True,
                                        "messages": [{"role": "user", "content": "Say something short"}]})
    body = b"".join(r.iter_content(None)).decode()
    return r.status_code, body.rstrip().endswith("data: [DONE]"), body


def test_200_concurrent_streams_on_one_worker_all_complete(slow_gateway):
    gw, user, _, _ = slow_gateway
    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(lambda _: _stream(gw.url, user["api_key"]), range(200)))
    assert [status for status, _, _ in results] == [200] * 200
    assert all(done for _, done, _ in results)
    assert all('"usage"' in body for _, _, body in results)


def _long_stream(url: str, key: str):
    """Start a stream that runs for seconds at the slow simulators' pace: (response, request id)."""
    r = requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, stream=True,
                      timeout=30, json={"model": "glm-4.5-air", "max_tokens": 400, "stream": True,
                                        "messages": [{"role": "user", "content": "Tell me a long story " * 20}]})
    return r, r.headers["X-Request-Id"]


def test_client_disconnect_closes_upstream_and_still_bills(slow_gateway):
    gw, user, _, env = slow_gateway
    r, request_id = _long_stream(gw.url, user["api_key"])
    it = r.iter_lines()
    got = [line for _, line in zip(range(6), it) if line]
    assert got
    r.close()  # the client goes away mid-answer
    row = None
    for _ in range(50):
        time.sleep(0.2)
        rows = db_rows(env, "select status, completion_tokens, cost_micros from requestlog where request_id={p}",
                       request_id)
        row = rows[0] if rows else None
        if row:
            break
    assert row is not None, "the request was recorded"
    status, completion_tokens, cost = row
    assert status == 499 and completion_tokens > 0 and cost > 0
    closed = db_rows(env, "select closed_at from hold where request_id={p}", request_id)[0][0]
    assert closed is not None, "the hold was settled"
    assert flask_here(env, "ledger", "check").returncode == 0


def test_kill_9_of_a_worker_mid_stream_then_reaper_releases_the_hold(slow_gateway):
    import os
    import select
    import signal

    gw, user, _, env = slow_gateway
    r, request_id = _long_stream(gw.url, user["api_key"])
    assert next(line for line in r.iter_lines() if line)
    owner, closed = db_rows(env, "select owner, closed_at from hold where request_id={p}", request_id)[0]
    assert closed is None
    pid = int(owner.rsplit(":", 1)[1])
    exited = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGKILL)  # the worker holding the stream dies at once
        # ... once the kernel has run its exit, which on a busy machine is not at once: wait for it.
        assert select.select([exited], [], [], 30)[0], "the killed worker exited"
    finally:
        os.close(exited)
    r.close()
    reaped = flask_here(env, "ledger", "reap")
    assert reaped.returncode == 0 and "released 1" in reaped.stdout
    assert db_rows(env, "select closed_at from hold where request_id={p}", request_id)[0][0] is not None
    kinds = [k for (k,) in db_rows(env, "select kind from ledgerentry where request_id={p} order by id", request_id)]
    assert kinds == ["hold", "release"], "the customer is not billed for a stream the gateway lost"
    check = flask_here(env, "ledger", "check")
    assert check.returncode == 0, check.stdout + check.stderr
