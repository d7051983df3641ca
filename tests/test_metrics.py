"""Prometheus at /metrics: off by default, token-protected when set, and under two gunicorn workers the
counters add up to the requests sent, whichever worker takes the scrape."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
import requests

from kyma import procs

from tests.conftest import register
from tests.servers import db_rows, gateway_env, start_gateway

TOKEN = "metrics-token-for-tests"
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")


def samples(text: str) -> list[tuple[str, dict, float]]:
    """(name, labels, value) of every sample line of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        found = SAMPLE.match(line)
        if found and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found["labels"] or ""))
            out.append((found["name"], labels, float(found["value"])))
    return out


def total(rows, name: str, **match) -> float:
    return sum(v for n, labels, v in rows if n == name and all(labels.get(k) == w for k, w in match.items()))


def test_metrics_are_off_by_default(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.integration
def test_a_gateway_without_the_setting_serves_no_metrics(gateway):
    r = requests.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 404 and "kyma_" not in r.text


@pytest.fixture(scope="module")
def metered(tmp_path_factory, simulators):
    workdir = tmp_path_factory.mktemp("metered")
    base, _ = simulators
    proc = start_gateway(workdir, gateway_env(workdir, base, KYMA_METRICS="on", KYMA_METRICS_TOKEN=TOKEN), workers=2)
    yield proc
    proc.stop()


def scrape(url: str) -> list[tuple[str, dict, float]]:
    r = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return samples(r.text)


@pytest.mark.integration
def test_the_token_is_required(metered):
    assert requests.get(f"{metered.url}/metrics", timeout=10).status_code == 401
    wrong = requests.get(f"{metered.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}, timeout=10)
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    basic = requests.get(f"{metered.url}/metrics", headers={"Authorization": f"Basic {TOKEN}"}, timeout=10)
    assert basic.status_code == 401
    assert requests.get(f"{metered.url}/metrics/", timeout=10).status_code == 404


@pytest.mark.integration
def test_counters_add_up_across_two_workers(metered):
    url = metered.url
    key = register(url, "metrics@example.com")["api_key"]
    plain, streamed, missing, unauthorized = 6, 4, 3, 2

    def chat(i: int):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)
        if i < plain:
            return client.chat.completions.create(model="kimi-k2.5", max_tokens=8,
                                                  messages=[{"role": "user", "content": f"hello {i}"}])
        return list(client.chat.completions.create(model="kimi-k2.5", max_tokens=8, stream=True,
                                                   messages=[{"role": "user", "content": f"count {i}"}]))

    # Side by side, on connections of their own: both workers take some.
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        list(pool.map(chat, range(plain + streamed)))
    for _ in range(missing):
        r = requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                          json={"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 404
    for _ in range(unauthorized):
        r = requests.post(f"{url}/v1/chat/completions", headers={"Authorization": "Bearer ky-wrong"}, timeout=10,
                          json={"model": "kimi-k2.5", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 401
    assert requests.get(f"{url}/v1/no-such-route", timeout=10).status_code == 404

    scrapes = [scrape(url) for _ in range(6)]  # either worker may answer each; all must agree
    rows = scrapes[0]
    for other in scrapes[1:]:
        assert total(other, "kyma_requests_total") == total(rows, "kyma_requests_total")
    assert total(rows, "kyma_requests_total") == plain + streamed + missing + unauthorized + 1
    assert total(rows, "kyma_requests_total", endpoint="chat", model="kimi-k2.5", status="200") == plain + streamed
    assert total(rows, "kyma_requests_total", endpoint="chat", model="other", status="404") == missing
    assert total(rows, "kyma_requests_total", endpoint="chat", model="kimi-k2.5", status="401") == unauthorized
    assert total(rows, "kyma_requests_total", endpoint="unknown", status="404") == 1
    assert total(rows, "kyma_request_duration_seconds_count") == plain + streamed + missing + unauthorized + 1
    assert total(rows, "kyma_time_to_first_token_seconds_count", model="kimi-k2.5") == streamed
    assert total(rows, "kyma_fallback_layer_total") == plain + streamed
    assert total(rows, "kyma_upstream_attempts_total", outcome="ok") == plain + streamed
    assert total(rows, "kyma_open_streams") == 0
    assert total(rows, "kyma_holds_outstanding") == 0

    (cost, prompt, completion), = db_rows(metered.env, "SELECT SUM(cost_micros), SUM(prompt_tokens), "
                                          "SUM(completion_tokens) FROM requestlog WHERE status = 200")
    assert total(rows, "kyma_credits_spent_usd_total") == pytest.approx(int(cost) / 1e6)
    assert total(rows, "kyma_tokens_total", kind="prompt") == prompt
    assert total(rows, "kyma_tokens_total", kind="completion") == completion
    circuits = [labels for n, labels, v in rows if n == "kyma_circuit_state" and v == 1]
    assert circuits and {c["state"] for c in circuits} == {"closed"}
    assert any(c["route"] == "sim-alpha/kimi-k2.5" for c in circuits)


@pytest.mark.integration
def test_a_dead_workers_counts_stay_and_its_live_gauge_goes(metered):
    """gunicorn's child_exit hook marks a killed worker dead: its counters still count, its gauges no longer."""
    key = register(metered.url, "metrics-kill@example.com")["api_key"]
    client = openai.OpenAI(base_url=f"{metered.url}/v1", api_key=key, max_retries=0, timeout=30)
    client.chat.completions.create(model="kimi-k2.5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    before = total(scrape(metered.url), "kyma_requests_total")
    files = Path(metered.env["KYMA_INSTANCE_DIR"]) / "prometheus"
    # The worker that served the call: only it has counted anything (the other may have no counter file).
    counted = {int(f.stem.rsplit("_", 1)[1]) for f in files.glob("counter_*.db")}
    live = {int(f.stem.rsplit("_", 1)[1]) for f in files.glob("gauge_livesum_*.db")}
    victim = min(counted & live)
    os.kill(victim, signal.SIGKILL)  # one of this test's own gateway workers, by its id
    deadline = time.monotonic() + 20
    while (files / f"gauge_livesum_{victim}.db").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (files / f"gauge_livesum_{victim}.db").exists()
    assert (files / f"counter_{victim}.db").exists()
    assert total(scrape(metered.url), "kyma_requests_total") == before


def test_off_the_request_path_does_not_load_prometheus(tmp_path):
    """With metrics off nothing of prometheus_client is imported, so no request pays for it."""
    code = ("import sys; from kyma.factory import create_app; from kyma.cli import create_or_migrate_schema\n"
            f"app = create_app({{'instance_dir': r'{tmp_path}', 'database_url': r'sqlite:///{tmp_path}/k.db', "
            "'secret_key': 'x', 'sim_base_port': 1})\n"
            "create_or_migrate_schema()\n"
            "r = app.test_client().post('/v1/chat/completions', json={'model': 'kimi-k2.5', 'messages': []})\n"
            "assert r.status_code == 401, r.status_code\n"
            "print(sorted(m for m in sys.modules if m.startswith('prometheus')))")
    env = procs.caller_env("PROMETHEUS")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_model_labels_stay_few():
    from kyma.services.metrics import Recorder
    from kyma.services.recording import RequestRecord

    rec = Recorder(["kimi-k2.5", "fast"])
    for name in ("kimi-k2.5", "fast", "x" * 90, "anything-a-client-types", ""):
        rec.observe(RequestRecord("r", "chat", 404, model_requested=name))
    labels = {s.labels["model"] for m in rec.requests.collect() for s in m.samples if s.name.endswith("_total")}
    assert labels == {"kimi-k2.5", "fast", "other", ""}


def test_circuits_switched_by_hand_have_states_of_their_own():
    """A circuit held open or a route disabled by an operator is neither closed nor half-open on a dashboard."""
    from kyma.services.breaker import BreakerState
    from kyma.services.metrics import StoreCollector

    states = {"auto/open": BreakerState("open", 5, time.time() + 60),
              "auto/cooled": BreakerState("open", 5, time.time() - 1),
              "hand/held": BreakerState("open", 0, 0.0, manual="open"),  # as the stores keep a circuit held open
              "hand/disabled": BreakerState("closed", 0, None, manual="disabled"),
              "auto/closed": BreakerState("closed", 0, None)}
    store = StoreCollector(lambda: [(key, "p", "m") for key in states], states.__getitem__, lambda: (0, 0))
    circuits = next(m for m in store.collect() if m.name == "kyma_circuit_state")
    current = {s.labels["route"]: s.labels["state"] for s in circuits.samples if s.value == 1}
    assert current == {"auto/open": "open", "auto/cooled": "half_open", "hand/held": "held_open",
                       "hand/disabled": "disabled", "auto/closed": "closed"}
    assert len(circuits.samples) == 5 * len(states), "every state of every route, 0 or 1"


def test_the_metrics_directory_is_emptied_and_named_for_the_workers(tmp_path):
    from kyma import gunicorn_hooks

    env = {"KYMA_METRICS": "on", "KYMA_INSTANCE_DIR": str(tmp_path)}
    stale = tmp_path / "prometheus" / "counter_123.db"
    stale.parent.mkdir()
    stale.write_bytes(b"x")
    (stale.parent / "keep.txt").write_text("not ours")
    assert gunicorn_hooks.prepare_metrics_dir(env) == tmp_path / "prometheus"
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "prometheus")
    assert not stale.exists() and (stale.parent / "keep.txt").exists()
    assert gunicorn_hooks.prepare_metrics_dir({"KYMA_METRICS": "off"}) is None


def test_simulators_do_not_inherit_the_metrics_settings(monkeypatch, tmp_path):
    from kyma.config import Settings
    from kyma.launcher import simulator_env

    monkeypatch.setenv("KYMA_METRICS", "on")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/somewhere")
    env = simulator_env(Settings.from_env({"instance_dir": tmp_path, "secret_key": "x"}))
    assert "KYMA_METRICS" not in env and "PROMETHEUS_MULTIPROC_DIR" not in env


def test_a_command_with_a_missing_metrics_directory_still_starts(tmp_path):
    """`flask init-db` with KYMA_METRICS on and PROMETHEUS_MULTIPROC_DIR naming a directory not made yet."""
    env = procs.caller_env("PROMETHEUS")
    env.update({"KYMA_METRICS": "on", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "not" / "yet"),
                "KYMA_INSTANCE_DIR": str(tmp_path), "KYMA_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}",
                "KYMA_SECRET_KEY": "x"})
    out = subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "app", "init-db"], env=env,
                         cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "not" / "yet").is_dir()


@pytest.mark.parametrize("value", ["on", "ON", "1", "true", "yes", "off", "0", "no", "", "maybe", None])
def test_the_gunicorn_hooks_read_kyma_metrics_and_the_instance_dir_as_settings_do(tmp_path, value):
    """gunicorn_hooks imports nothing of the gateway, so it reads both settings itself: the same way."""
    from kyma import gunicorn_hooks
    from kyma.config import SETTINGS, Settings

    env = {} if value is None else {"KYMA_METRICS": value}
    settings = Settings.from_env({"instance_dir": tmp_path, "secret_key": "x"}, environ=env)
    assert gunicorn_hooks.metrics_on(env) is settings.metrics
    instance = next(s for s in SETTINGS if s.env == "KYMA_INSTANCE_DIR")
    assert instance.default == str(gunicorn_hooks.PATH.parent.parent / "instance")
