"""Scale-out: gateways on one PostgreSQL database and one Redis share limits, money, keys
and route health; a pooled gateway never needs more PostgreSQL connections than its pool allows.

Two gunicorn masters (2 gevent workers each) on different ports, one fresh PostgreSQL database,
one Redis key prefix, and the pytest process's simulated providers, which answer at once, except in
the races for credit, whose requests wait at the simulators' gate until every one is admitted or
refused (tests/gated.py: every credit hold is placed before any request settles).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import requests

from kyma.config import DATA
from tests import pg
from tests.conftest import register
from tests.gated import FIRST_BYTE_TIMEOUT, GATE, concurrently, gated
from tests.servers import flask_cli, flask_here, gateway_env, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]

MODEL = "qwen-3-32b"
BREAKER_MODEL = "glm-4.5-air"  # its own routes, so no other test here touches their breakers
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 256}
POOL_SIZE = 4
TIER0_RPM = 10


@pytest.fixture(scope="module")
def backends():
    """Skip the module (with the reason) unless PostgreSQL and Redis answer on 127.0.0.1."""
    reason = pg.postgres_unavailable() or pg.redis_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def sims(backends, simulators):
    """The pytest process's simulated providers (they answer at once unless a request asks for a fault)."""
    base, _ = simulators
    return base


@pytest.fixture()
def gates(simulators) -> list[str]:
    """The simulated providers' URLs, whose gates the races for credit open."""
    return [sim.url for sim in simulators[1]]


def _tiers(path: Path, tier0_rpm: int) -> Path:
    """A tier ladder whose tier 0 allows `tier0_rpm` requests/minute and tier 1 ($5 bought) 1000."""
    ladder = json.loads((DATA / "tiers.json").read_text())
    ladder["tiers"][0].update(rpm=tier0_rpm, per_model_rpm=tier0_rpm)
    ladder["tiers"][1].update(rpm=1000, per_model_rpm=1000)
    path.write_text(json.dumps(ladder))
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, sims):
    """Two gateway instances (A, B) on one PostgreSQL database and one Redis prefix."""
    workdir = tmp_path_factory.mktemp("cluster")
    url, prefix = pg.create_database(), pg.new_redis_prefix()
    shared = dict(KYMA_DATABASE_URL=url, KYMA_REDIS_URL=pg.REDIS_URL, KYMA_REDIS_PREFIX=prefix,
                  KYMA_DATABASE_POOL_SIZE=POOL_SIZE, KYMA_TIERS=_tiers(workdir / "tiers.json", TIER0_RPM),
                  KYMA_BREAKER_FAILURES=3, KYMA_BREAKER_COOLDOWN_SECONDS=120,
                  KYMA_FIRST_BYTE_TIMEOUT=FIRST_BYTE_TIMEOUT)
    gateways = []
    try:
        for name in ("a", "b"):
            home = workdir / name
            home.mkdir()
            # Both run init-db on the same database: the second finds the schema up to date.
            gateways.append(start_gateway(home, gateway_env(home, sims, **shared), workers=2))
        yield gateways, url
    finally:
        for gw in gateways:
            gw.stop()
        pg.drop_database(url)
        pg.delete_redis_prefix(prefix)


@pytest.fixture()
def pg_gateway(tmp_path, sims):
    """One 2-worker gateway on a fresh PostgreSQL database, limits in the database (no Redis)."""
    url = pg.create_database()
    env = gateway_env(tmp_path, sims, KYMA_DATABASE_URL=url, KYMA_DATABASE_POOL_SIZE=POOL_SIZE,
                      KYMA_TIERS=_tiers(tmp_path / "tiers.json", 1000), KYMA_FIRST_BYTE_TIMEOUT=FIRST_BYTE_TIMEOUT)
    gw = start_gateway(tmp_path, env, workers=2)
    try:
        yield gw, url
    finally:
        gw.stop()
        pg.drop_database(url)


def _email() -> str:
    return f"scale-{uuid.uuid4().hex[:10]}@example.com"


def _client(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=60)


def _chat_status(gw, key: str, body: dict = BODY) -> int:
    return _sdk_status(_client(gw, key), body)


def _sdk_status(client: openai.OpenAI, body: dict) -> int:
    try:
        client.chat.completions.create(**body)
        return 200
    except openai.APIStatusError as exc:
        return exc.status_code


def _gated_post_status(gw, key: str) -> int:
    """One chat request held at the simulators' gate, with plain requests (light on the client's CPU):
    it keeps its credit on hold until the race's every request is admitted or refused."""
    headers = {"Authorization": f"Bearer {key}", **GATE}
    return requests.post(f"{gw.url}/v1/chat/completions", json=BODY, headers=headers, timeout=90).status_code


def _fund_for(url: str, gw, email: str, key: str, requests_covered: int) -> int:
    """Lift the account to tier 1 (a $5 purchase), learn one request's hold from a probe, and set
    the balance to cover exactly `requests_covered` concurrent holds (plus half a hold)."""
    from kyma.db import database, init_db
    from kyma.services import ledger

    init_db(url)
    try:
        ledger.add_credit(email, Decimal(5), kind="purchase")
        assert _chat_status(gw, key) == 200
        account_id, hold = pg.query(url, "SELECT account_id, -amount_micros FROM ledgerentry "
                                         "WHERE kind = 'hold' ORDER BY id DESC LIMIT 1")[0]
        target = requests_covered * hold + hold // 2
        delta = target - ledger.balance(account_id).balance_micros
        ledger.add_credit(account_id, Decimal(delta) / 1_000_000, kind="adjustment")
        assert ledger.balance(account_id).balance_micros == target
    finally:
        database.close()
    return account_id


def _balance_micros(url: str, account_id: int) -> int:
    return pg.query(url, "SELECT balance_micros FROM account WHERE id = %s", (account_id,))[0][0]


class PeakConnections:
    """Samples the number of server connections on one database while a block runs."""

    def __init__(self, url: str):
        self.url, self.peak, self._stop = url, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, pg.connection_count(self.url))
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_schema_command_is_idempotent_on_postgres(cluster):
    (a, _), url = cluster
    again = flask_cli(a.env, "init-db")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "schema is up to date"
    tables = {r[0] for r in pg.query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"account", "apikey", "ledgerentry", "hold", "ratecounter", "routestate"} <= tables


def test_rate_limit_is_global_across_instances(cluster):
    (a, b), _ = cluster
    key = register(a.url, _email())["api_key"]
    small = dict(BODY, max_tokens=16)
    clients = [_client((a, b)[i % 2], key) for i in range(16)]  # built before the race: they cost CPU
    started = time.monotonic()
    statuses = concurrently([lambda c=c: _sdk_status(c, small) for c in clients])
    # The allowance refills one request every 60/rpm s: a slow machine may see a refill during the
    # race, never more than the time allows. Exact across instances means inside these bounds.
    refills = lambda: int((time.monotonic() - started) // (60 / TIER0_RPM))  # noqa: E731
    admitted = statuses.count(200)
    assert TIER0_RPM <= admitted <= TIER0_RPM + refills() and statuses.count(429) == 16 - admitted, statuses
    for gw in (a, b):
        limits = requests.get(f"{gw.url}/v1/auth/limits", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert TIER0_RPM - refills() <= limits.json()["rpm_used"] <= TIER0_RPM, limits.text
    late = _chat_status(b, key, small)
    if refills() == 0:  # read after the request: no refill had come when it was admitted or refused
        assert late == 429


def test_balance_is_never_overspent_across_instances(cluster, gates):
    (a, b), url = cluster
    email = _email()
    key = register(b.url, email)["api_key"]
    covered = 8
    account_id = _fund_for(url, a, email, key, covered)
    statuses = gated(gates, [lambda gw=(a, b)[i % 2]: _gated_post_status(gw, key) for i in range(30)])
    assert (statuses.count(200), statuses.count(402)) == (covered, 30 - covered), statuses
    assert _balance_micros(url, account_id) >= 0
    check = flask_here(b.env, "ledger", "check")
    assert check.returncode == 0, check.stderr


def test_key_revoked_on_one_instance_is_refused_by_the_other_from_the_next_request(cluster):
    (a, b), _ = cluster
    reg = register(a.url, _email())
    session = {"Authorization": f"Bearer {reg['session_token']}"}
    new = requests.post(f"{a.url}/v1/auth/keys", json={"name": "doomed"}, headers=session, timeout=10).json()
    models = lambda gw: _client(gw, new["key"]).models.list()  # noqa: E731 — warms any per-instance cache
    me = lambda gw: requests.get(f"{gw.url}/v1/auth/me", headers={"Authorization": f"Bearer {new['key']}"},
                                 timeout=10)  # noqa: E731
    models(b)
    # Each request a new connection, which either of B's two workers may take: both keep the key's row.
    assert [me(b).status_code for _ in range(8)] == [200] * 8
    gone = requests.delete(f"{a.url}/v1/auth/keys/{new['id']}", headers=session, timeout=10)
    assert gone.status_code == 200, gone.text
    assert [me(b).status_code for _ in range(8)] == [401] * 8
    with pytest.raises(openai.AuthenticationError):
        _client(b, new["key"]).chat.completions.create(**dict(BODY, max_tokens=16))
    assert me(a).status_code == 401


def test_open_circuit_seen_by_one_instance_is_honoured_by_the_other(cluster):
    (a, b), _ = cluster
    key = register(a.url, _email())["api_key"]
    body = {"model": BREAKER_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}
    faulty = _client(a, key).with_options(default_headers={"X-Kyma-Sim-Fault": "sim-alpha=500"})
    attempts = []
    for _ in range(6):  # KYMA_BREAKER_FAILURES=3: the route opens after three failed attempts
        raw = faulty.chat.completions.with_raw_response.create(**body)
        assert raw.headers["X-Kyma-Provider"] == "sim-beta"
        attempts.append(int(raw.headers["X-Kyma-Attempts"]))
        if attempts[-1] == 1:
            break
    assert attempts[:3] == [2, 2, 2] and attempts[-1] == 1, attempts
    # B sends no fault: sim-alpha would answer, so being served by sim-beta in one attempt means B
    # skipped sim-alpha because A's failures opened the shared circuit.
    raw = _client(b, key).chat.completions.with_raw_response.create(**body)
    assert raw.headers["X-Kyma-Provider"] == "sim-beta"
    assert raw.headers["X-Kyma-Attempts"] == "1"
    assert raw.headers["X-Kyma-Fallback-Layer"] == "1"


def test_fifty_concurrent_requests_with_credit_for_ten_on_postgres(pg_gateway, gates):
    gw, url = pg_gateway
    email = _email()
    key = register(gw.url, email)["api_key"]
    account_id = _fund_for(url, gw, email, key, 10)
    with PeakConnections(url) as conns:
        statuses = gated(gates, [lambda: _gated_post_status(gw, key) for _ in range(50)])
    assert (statuses.count(200), statuses.count(402)) == (10, 40), statuses
    assert _balance_micros(url, account_id) >= 0
    check = flask_here(gw.env, "ledger", "check")
    assert check.returncode == 0, check.stderr
    # 2 workers × KYMA_DATABASE_POOL_SIZE bounds the server connections, however many requests wait.
    assert 0 < conns.peak <= 2 * POOL_SIZE, conns.peak
