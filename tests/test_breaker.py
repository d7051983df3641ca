"""Circuit breaker: the pure state machine, the database and Redis stores, and the breaker in a live gateway."""

from __future__ import annotations

import time

import pytest
import requests

from kyma.db import database
from kyma.services.breaker import (CLOSED, HALF_OPEN, OPEN, CircuitBreaker, DatabaseBreakerStore,
                                   RedisBreakerStore, next_state)
from tests.conftest import register
from tests.servers import end_cooldowns, gateway_env, start_gateway


def test_opens_after_threshold_and_cooldown_doubles_up_to_its_cap():
    st = None
    for _ in range(4):
        st = next_state(st, 1000.0, 5, (2, 5), None)
    assert st.state == CLOSED and st.failures == 4
    st = next_state(st, 1000.0, 5, (2, 5), None)
    assert st.state == OPEN and st.opened_until == 1002.0
    st = next_state(st, 1001.0, 5, (2, 5), None)
    assert st.opened_until == 1005.0
    for _ in range(20):  # a provider down for an hour is still tried again every few seconds
        st = next_state(st, 2000.0, 5, (2, 5), None)
    assert st.opened_until == 2005.0


def test_failed_probe_reopens_and_retry_after_never_shortens():
    from kyma.services.breaker import BreakerState

    st = next_state(BreakerState(HALF_OPEN, 1, None), 100.0, 5, (30, 30), None)
    assert st.state == OPEN and st.opened_until == 130.0
    st = next_state(BreakerState(OPEN, 5, 500.0), 100.0, 5, (30, 30), 10)
    assert st.opened_until == 500.0, "a shorter hint leaves the later deadline in place"


def _exercise(breaker: CircuitBreaker, route: str):
    now = time.time()
    assert breaker.check(route, now).allowed
    assert [breaker.record_failure(route, now=now) for _ in range(3)] == [1, 2, 3]  # what a retry compares
    verdict = breaker.check(route, now + 1)
    assert not verdict.allowed and verdict.retry_at == pytest.approx(now + 10) and verdict.failures == 3
    # After the cooldown exactly one caller gets the probe.
    probes = [breaker.check(route, now + 11).allowed for _ in range(5)]
    assert probes.count(True) == 1
    breaker.record_success(route, breaker.check(route, now + 11))
    assert breaker.state(route).state == CLOSED
    assert breaker.check(route, now + 12).allowed


def test_database_store(backend_db):
    _exercise(CircuitBreaker(DatabaseBreakerStore(), failures=3, cooldown=10), "sim-a/m1")


_BREAKER_WORKER = """
import sys
from kyma.db import init_db
from kyma.services.breaker import DatabaseBreakerStore
init_db(sys.argv[1])
store = DatabaseBreakerStore()
hint = float(sys.argv[2])
for _ in range(int(sys.argv[3])):
    store.failure("sim-a/m1", 1000.0, 10**6, (30.0, 30.0), hint)
"""


def test_database_store_loses_no_failures_across_processes(backend_db):
    """Concurrent failures from several processes all count, and the longest cooldown wins."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    run = [sys.executable, "-c", _BREAKER_WORKER, backend_db]
    # Each process sends its own Retry-After hint (10, 20, 30, 40 s), so their deadlines differ.
    procs = [subprocess.Popen(run + [str(10 * (i + 1)), "40"], cwd=root) for i in range(4)]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    with database.connection_context():  # backend_db bound this process to the same database
        st = DatabaseBreakerStore().get("sim-a/m1")
    assert st.failures == 160, "no failure is lost"
    assert st.opened_until == 1040.0, "a shorter cooldown never overwrites a longer one"


def test_redis_store():
    from tests.backends import REDIS_URL, redis_prefix

    with redis_prefix() as prefix:
        _exercise(CircuitBreaker(RedisBreakerStore(REDIS_URL, prefix=prefix), failures=3, cooldown=10), "sim-a/m1")


def test_redis_store_down_fails_open(caplog):
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound but not listening: every connect is refused
    store = RedisBreakerStore(f"redis://127.0.0.1:{closed.getsockname()[1]}/0")
    breaker = CircuitBreaker(store, failures=1, cooldown=10)
    now = time.time()
    with caplog.at_level("WARNING", logger="kyma.services.breaker"):
        for _ in range(3):
            breaker.record_failure("sim-a/m1", retry_after=30, now=now)  # would open it, if stored
            verdict = breaker.check("sim-a/m1", now + 1)
            assert verdict.allowed
            breaker.record_success("sim-a/m1", verdict)
    assert store.claim_probe("sim-a/m1", now, stale_after=10) is True
    assert breaker.state("sim-a/m1").state == CLOSED
    closed.close()
    warnings = [r for r in caplog.records if "breaker store unavailable" in r.getMessage()]
    assert len(warnings) == 1, "the warning is rate-limited"


def test_redis_store_hanging_fails_open():
    import socket
    import threading

    # A socket that listens but never accepts: connections complete, replies never come.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        store = RedisBreakerStore(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        verdicts = []
        worker = threading.Thread(target=lambda: verdicts.append(CircuitBreaker(store).check("sim-a/m1")),
                                  daemon=True)
        worker.start()
        worker.join(30)  # a hang guard, not a timing assertion: the socket timeout is 0.5 s
        assert not worker.is_alive(), "a hung Redis must not hang the request"
    assert verdicts[0].allowed


@pytest.mark.integration
def test_breaker_in_a_live_gateway_skips_then_probes_then_closes(tmp_path, simulators):
    base, sims = simulators
    # A cooldown far longer than the test: the route opens until the test itself ends the cooldown.
    env = gateway_env(tmp_path, base, KYMA_BREAKER_FAILURES=3, KYMA_BREAKER_COOLDOWN_SECONDS=600,
                      KYMA_BREAKER_MAX_COOLDOWN_SECONDS=600)
    gw = start_gateway(tmp_path, env, workers=2)
    try:
        key = register(gw.url, "cb@example.com")["api_key"]
        alpha = sims[0]

        def ask(fault=None):
            h = {"Authorization": f"Bearer {key}", **({"X-Kyma-Sim-Fault": fault} if fault else {})}
            return requests.post(f"{gw.url}/v1/chat/completions", headers=h, timeout=20, json={
                "model": "gemini-3-flash", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})

        def alpha_hits():
            return requests.get(f"{alpha.url}/sim/stats", timeout=5).json()["by_model"].get("gemini-3-flash", 0)

        for _ in range(3):
            assert ask("sim-alpha=500").headers["X-Kyma-Provider"] == "sim-beta"
        opened_at = alpha_hits()
        for _ in range(4):  # open on both workers: sim-alpha is skipped, not even tried
            r = ask("sim-alpha=500")
            assert r.headers["X-Kyma-Provider"] == "sim-beta" and r.headers["X-Kyma-Attempts"] == "1"
        assert alpha_hits() == opened_at
        end_cooldowns(env)
        r = ask()  # the probe succeeds and closes the breaker
        assert r.headers["X-Kyma-Provider"] == "sim-alpha" and r.headers["X-Kyma-Fallback"] == "false"
        assert ask().headers["X-Kyma-Provider"] == "sim-alpha"
    finally:
        gw.stop()
