"""A per-model 429 over real processes: the openai SDK's own retry waits Retry-After and then succeeds."""

from __future__ import annotations

import json
import math
import uuid

import httpx
import openai
import pytest
import requests

from kyma.config import DATA
from tests.conftest import register
from tests.servers import gateway_env, start_gateway

pytestmark = pytest.mark.integration

MODEL = "qwen-3-32b"
PER_MODEL_RPM = 12  # once the burst is spent, one request for the model every 5 s
MESSAGES = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def limited_gateway(tmp_path_factory, simulators):
    """A gateway whose tier 0 allows 600 requests/minute but only PER_MODEL_RPM for each model."""
    workdir = tmp_path_factory.mktemp("limited")
    ladder = json.loads((DATA / "tiers.json").read_text())
    ladder["tiers"][0].update(rpm=600, per_model_rpm=PER_MODEL_RPM)
    (workdir / "tiers.json").write_text(json.dumps(ladder))
    base, _ = simulators
    gw = start_gateway(workdir, gateway_env(workdir, base, KYMA_TIERS=str(workdir / "tiers.json")), workers=2)
    yield gw
    gw.stop()


def _spend_the_burst(gw, key: str) -> None:
    """Send requests for MODEL until the gateway answers 429."""
    for _ in range(PER_MODEL_RPM + 5):
        r = requests.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": MODEL, "messages": MESSAGES, "max_tokens": 5}, timeout=30)
        if r.status_code == 429:
            return
        assert r.status_code == 200, r.text
    raise AssertionError("the per-model limit never refused")


def test_the_sdk_retries_a_per_model_429_by_itself_and_succeeds(limited_gateway):
    gw = limited_gateway
    key = register(gw.url, f"retry-{uuid.uuid4().hex[:8]}@example.com")["api_key"]
    seen: list[tuple[int, httpx.Headers]] = []
    http = httpx.Client(event_hooks={"response": [lambda r: seen.append((r.status_code, r.headers))]})
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=2, timeout=30, http_client=http)
    for _ in range(3):  # a slot that refilled between the burst and the SDK's call: spend it again
        _spend_the_burst(gw, key)
        seen.clear()
        reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
        if seen[0][0] == 429:
            break
    assert reply.choices[0].message.content
    assert [status for status, _ in seen] == [429, 200]
    refused, admitted = seen[0][1], seen[1][1]
    assert refused["x-ratelimit-scope"] == "model"
    assert refused["x-ratelimit-limit-requests"] == str(PER_MODEL_RPM)
    assert refused["x-ratelimit-remaining-requests"] == "0"
    wait_ms = int(refused["retry-after-ms"])
    assert 1 <= wait_ms <= 60_000 // PER_MODEL_RPM  # at most one refill interval, not a minute
    assert int(refused["retry-after"]) == math.ceil(wait_ms / 1000)
    assert admitted["x-ratelimit-scope"] == "model"
    assert admitted["x-ratelimit-limit-requests"] == str(PER_MODEL_RPM)
    assert admitted["x-ratelimit-limit-tokens"] == str(json.loads((DATA / "tiers.json").read_text())["tiers"][0]["tpm"])
