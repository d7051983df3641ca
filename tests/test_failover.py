"""Failover that rescues every answer, end to end: the real openai and anthropic SDKs → gunicorn gateway
→ simulator processes injecting one fault each. Every test checks the whole answer, the attempts,
what the headers or the final event say, and what was billed."""

from __future__ import annotations

import json
import uuid

import anthropic
import openai
import pytest
import requests

from kyma.config import DATA
from kyma.tokens import count_text
from tests.conftest import register
from tests.servers import db_rows, end_cooldowns, flask_here, gateway_env, spawn_simulator, start_gateway, stop_all

pytestmark = pytest.mark.integration

MODEL = "qwen-3-32b"  # served by sim-alpha, sim-beta and sim-gamma, in that order
ONLY_ALPHA = {"provider": {"only": ["sim-alpha"]}}  # one route of the model: fallbacks are other models


def counting(n: int) -> tuple[list[dict], str]:
    """A prompt whose answer is known ("1 2 … n"), unique so `+once` faults hit this test alone."""
    return [{"role": "user", "content": f"count to {n} (test {uuid.uuid4().hex[:8]})"}], \
        " ".join(str(i) for i in range(1, n + 1))


def openai_stream(client: openai.OpenAI, fault: str, messages: list[dict], **body) -> tuple[str, list, dict]:
    """Stream through the SDK: (text, chunks, response headers)."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=200, stream=True,
        extra_headers={"X-Kyma-Sim-Fault": fault}, **body)
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks, raw.headers


def logged(env: dict, request_id: str) -> dict:
    """The request-log row and the upstream attempts of one request."""
    cols = ("status", "model_served", "provider", "attempts", "completion_tokens", "cost_micros",
            "upstream_cost_micros", "note", "fallback_layer")
    row = db_rows(env, f"SELECT {', '.join(cols)} FROM requestlog WHERE request_id = {{p}}", request_id)[0]
    attempts = db_rows(env, "SELECT provider, role, ok, status, completion_tokens, cost_micros FROM routeoutcome "
                            "WHERE request_id = {p} ORDER BY id", request_id)
    usage = db_rows(env, "SELECT amount_micros FROM ledgerentry WHERE request_id = {p} AND kind = 'usage'",
                    request_id)
    return {**dict(zip(cols, row)), "tries": [dict(zip(("provider", "role", "ok", "status", "tokens", "cost"), a))
                                             for a in attempts],
            "charged": -usage[0][0] if usage else None}


def ledger_ok(env: dict) -> None:
    done = flask_here(env, "ledger", "check")
    assert done.returncode == 0, done.stderr


# --- same-route retries ---------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault, status", [("429:1+once", 429), ("500+once", 500)])
def test_a_blip_is_retried_on_the_same_provider_instead_of_a_weaker_model(gateway, oai, stream, fault, status):
    messages, answer = counting(20)
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=100, stream=stream, extra_body=ONLY_ALPHA,
        extra_headers={"X-Kyma-Sim-Fault": f"sim-alpha={fault}"})
    reply = raw.parse()
    text = "".join(c.choices[0].delta.content or "" for c in reply if c.choices) if stream \
        else reply.choices[0].message.content
    assert text == answer
    h = raw.headers
    assert h["X-Kyma-Model"] == MODEL and h["X-Kyma-Provider"] == "sim-alpha" and h["X-Kyma-Fallback"] == "false"
    assert h["X-Kyma-Attempts"] == "2"
    log = logged(gateway.env, h["X-Request-Id"])
    assert [(t["provider"], t["role"], bool(t["ok"]), t["status"]) for t in log["tries"]] == [
        ("sim-alpha", "", False, status), ("sim-alpha", "retry", True, 200)]
    assert log["charged"] == log["cost_micros"] > 0
    ledger_ok(gateway.env)


@pytest.mark.parametrize("stream", [False, True])
def test_every_provider_rate_limited_once_is_waited_for_by_an_anthropic_client(gateway, account, stream):
    # All three routes answer 429 with Retry-After: 1 once: another model would be a worse answer
    # than waiting a second for the first route, which is ready first.
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=account["api_key"], max_retries=0, timeout=30)
    messages, answer = counting(15)
    raw = claude.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=messages, stream=stream,
        extra_headers={"X-Kyma-Sim-Fault": "*=429:1+once"})
    reply = raw.parse()
    if stream:
        text = "".join(e.delta.text for e in reply if e.type == "content_block_delta")
    else:
        text = reply.content[0].text
    assert text == answer
    assert raw.headers["X-Kyma-Provider"] == "sim-alpha" and raw.headers["X-Kyma-Model"] == MODEL
    log = logged(gateway.env, raw.headers["X-Request-Id"])
    assert [(t["provider"], t["role"]) for t in log["tries"]] == [
        ("sim-alpha", ""), ("sim-beta", ""), ("sim-gamma", ""), ("sim-alpha", "retry")]
    assert raw.headers["X-Kyma-Attempts"] == "4" and log["charged"] == log["cost_micros"]
    ledger_ok(gateway.env)


# --- the first-token limit ------------------------------------------------------------------------

def test_a_first_token_that_takes_too_long_fails_over_to_the_next_provider(gateway, oai):
    messages, answer = counting(12)
    text, chunks, h = openai_stream(oai, "sim-alpha=slow-first:30", messages)
    assert text == answer
    assert h["X-Kyma-Provider"] == "sim-beta" and h["X-Kyma-Fallback-Layer"] == "1" and h["X-Kyma-Attempts"] == "2"
    log = logged(gateway.env, h["X-Request-Id"])
    assert [(t["provider"], bool(t["ok"])) for t in log["tries"]] == [("sim-alpha", False), ("sim-beta", True)]
    ledger_ok(gateway.env)


# --- mid-stream continuation ----------------------------------------------------------------------

def uninterrupted_cost(client: openai.OpenAI, messages: list[dict]) -> float:
    """What the same answer costs from the same model without any fault."""
    return client.chat.completions.create(model=MODEL, messages=messages, max_tokens=200).usage.cost


@pytest.mark.parametrize("fault", ["cut:6", "stall:6", "no-finish:6", "garbage:6"])
def test_a_stream_that_breaks_mid_answer_is_continued_by_the_next_provider(gateway, oai, fault):
    messages, answer = counting(40)
    text, chunks, h = openai_stream(oai, f"sim-alpha={fault}", messages)
    assert text == answer  # one seamless answer: nothing lost, nothing repeated
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    final = chunks[-1]
    assert final.model == MODEL and final.id == chunks[0].id
    assert final.model_extra["kyma"]["continued_by"] == {"model": MODEL, "provider": "sim-beta"}
    log = logged(gateway.env, h["X-Request-Id"])
    assert [(t["provider"], t["role"], bool(t["ok"])) for t in log["tries"]] == [
        ("sim-alpha", "", False), ("sim-beta", "continuation", True)]
    assert "continued by qwen-3-32b on sim-beta after sim-alpha broke" in log["note"]
    broken, continued = log["tries"]
    assert 0 < broken["tokens"] < count_text(answer) and broken["cost"] > 0
    # Billing: the client pays at most one uninterrupted answer; both parts cost the operator.
    assert final.usage.cost <= uninterrupted_cost(oai, messages) + 1e-6
    assert log["charged"] == round(final.usage.cost * 1e6) == log["cost_micros"]
    assert log["upstream_cost_micros"] == broken["cost"] + continued["cost"] > log["charged"]
    ledger_ok(gateway.env)


def anthropic_events(client: anthropic.Anthropic, fault: str, messages: list[dict]) -> tuple[list, str, dict]:
    """Stream through the anthropic SDK: (events, text, response headers)."""
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=200, messages=messages, stream=True,
                                                   extra_headers={"X-Kyma-Sim-Fault": fault})
    events = list(raw.parse())
    return events, "".join(e.delta.text for e in events if e.type == "content_block_delta"), raw.headers


@pytest.mark.parametrize("fault", ["cut:6", "stall:6", "no-finish:6", "garbage:6"])
def test_an_anthropic_stream_that_breaks_is_continued_with_one_message_stop(gateway, account, fault):
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=account["api_key"], max_retries=0, timeout=30)
    messages, answer = counting(40)
    events, text, h = anthropic_events(claude, f"sim-alpha={fault}", messages)
    assert text == answer
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds.count("message_stop") == 1 and kinds[-1] == "message_stop"
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "end_turn"
    assert delta.model_extra["kyma"]["continued_by"]["provider"] == "sim-beta"
    assert delta.usage.output_tokens == count_text(answer)
    log = logged(gateway.env, h["X-Request-Id"])
    assert [t["role"] for t in log["tries"]] == ["", "continuation"]
    assert log["charged"] == log["cost_micros"] and log["upstream_cost_micros"] > log["charged"]
    ledger_ok(gateway.env)


def test_an_anthropic_stream_fails_over_on_a_slow_first_token_and_skips_a_malformed_event(gateway, account):
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=account["api_key"], max_retries=0, timeout=30)
    messages, answer = counting(12)
    events, text, h = anthropic_events(claude, "sim-alpha=slow-first:30", messages)
    assert text == answer and h["X-Kyma-Provider"] == "sim-beta" and h["X-Kyma-Attempts"] == "2"
    assert [e.type for e in events].count("message_stop") == 1
    messages, answer = counting(20)
    events, text, h = anthropic_events(claude, "sim-alpha=malformed:4", messages)
    assert text == answer and h["X-Kyma-Provider"] == "sim-alpha" and h["X-Kyma-Attempts"] == "1"
    ledger_ok(gateway.env)


def test_one_malformed_event_is_skipped_and_the_stream_goes_on(gateway, oai):
    messages, answer = counting(20)
    text, chunks, h = openai_stream(oai, "sim-alpha=malformed:4", messages)
    assert text == answer and h["X-Kyma-Provider"] == "sim-alpha" and h["X-Kyma-Attempts"] == "1"
    assert "kyma" not in chunks[-1].model_extra
    log = logged(gateway.env, h["X-Request-Id"])
    assert log["note"] == "skipped 1 malformed stream event(s)" and len(log["tries"]) == 1


def test_a_half_made_tool_call_is_never_continued(oai):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    stream = oai.chat.completions.create(model=MODEL, stream=True, tools=[tool], max_tokens=100,
                                         messages=[{"role": "user", "content": "get_weather for Paris"}],
                                         extra_headers={"X-Kyma-Sim-Fault": "sim-alpha=cut:3"})
    got = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            got.append(chunk)
    assert any(c.choices and c.choices[0].delta.tool_calls for c in got)
    assert "upstream" in exc.value.message


def test_a_stream_that_breaks_with_nobody_to_continue_bills_exactly_what_was_delivered(gateway, oai):
    messages, _ = counting(40)
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=200, stream=True,
        extra_body={"provider": {"only": ["sim-alpha"], "allow_fallbacks": False}},
        extra_headers={"X-Kyma-Sim-Fault": "sim-alpha=cut:12"})
    delivered = []
    with pytest.raises(openai.APIError):
        for chunk in raw.parse():
            delivered.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    log = logged(gateway.env, raw.headers["X-Request-Id"])
    assert log["status"] == 502 and log["completion_tokens"] == count_text("".join(delivered)) > 0
    assert log["charged"] == log["cost_micros"] > 0
    ledger_ok(gateway.env)


# --- a gateway of its own: routes that say what they can continue, and circuits that recover -----

@pytest.fixture(scope="module")
def failover(tmp_path_factory, simulators):
    """A gateway whose qwen-3-32b routes are sim-alpha, a provider that says it cannot continue an
    answer, one that says it can but refuses a prefill, then sim-beta; circuits on short cooldowns."""
    workdir = tmp_path_factory.mktemp("failover")
    base, _ = simulators
    strict = spawn_simulator("sim-strict", workdir, kyma_sim_prefill="reject")  # boots while the gateway does
    routes = json.loads((DATA / "routes.json").read_text())
    routes["providers"]["sim-noprefill"] = {"base_url": f"{strict.url}/v1", "simulated": True, "prefill": False}
    routes["providers"]["sim-strict"] = {"base_url": f"{strict.url}/v1", "simulated": True, "prefill": True}
    routes["routes"][MODEL] = [{"provider": p} for p in ("sim-alpha", "sim-noprefill", "sim-strict", "sim-beta")]
    (workdir / "routes.json").write_text(json.dumps(routes))
    big = 10**9  # steady test traffic must not meet a rate limit
    (workdir / "tiers.json").write_text(json.dumps({"tiers": [{"level": 0, "name": "Test", "min_purchased_usd": 0,
                                                               "rpm": big, "per_model_rpm": big, "tpm": big,
                                                               "max_tokens_per_request": 100000}]}))
    env = gateway_env(workdir, base, KYMA_ROUTES=str(workdir / "routes.json"), KYMA_TIERS=str(workdir / "tiers.json"),
                      KYMA_FIRST_TOKEN_TIMEOUT=2,
                      KYMA_IDLE_TIMEOUT=2, KYMA_BREAKER_COOLDOWN_SECONDS=1, KYMA_BREAKER_MAX_COOLDOWN_SECONDS=2)
    proc = start_gateway(workdir, env, workers=2)
    strict.wait_ready("/v1/models")
    yield proc, base
    stop_all([proc, strict])


def test_continuation_skips_what_cannot_prefill_and_survives_a_refused_prefill(failover):
    gw, _ = failover
    key = register(gw.url, f"cont-{uuid.uuid4().hex[:8]}@example.com")["api_key"]
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=30)
    messages, answer = counting(40)
    text, chunks, h = openai_stream(client, "sim-alpha=cut:6", messages)
    assert text == answer
    assert chunks[-1].model_extra["kyma"]["continued_by"]["provider"] == "sim-beta"
    log = logged(gw.env, h["X-Request-Id"])
    assert [(t["provider"], t["role"], bool(t["ok"]), t["status"]) for t in log["tries"]] == [
        ("sim-alpha", "", False, None), ("sim-strict", "continuation", False, 400),
        ("sim-beta", "continuation", True, 200)]  # sim-noprefill was never asked
    ledger_ok(gw.env)


def test_a_provider_down_for_a_while_serves_again_once_its_circuit_may_probe_and_no_request_is_lost(failover):
    gw, base = failover
    alpha = f"http://127.0.0.1:{base}"
    key = register(gw.url, f"flap-{uuid.uuid4().hex[:8]}@example.com")["api_key"]
    session = requests.Session()

    def ask() -> tuple[str, str]:
        r = session.post(f"{gw.url}/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}"},
                         json={"model": "glm-4.5-air", "max_tokens": 16,
                               "messages": [{"role": "user", "content": "say exactly: ok"}]})
        assert r.status_code == 200, r.text  # every request answered
        return r.headers["X-Kyma-Provider"], r.headers["X-Request-Id"]

    # Down until the test says otherwise: the outage's length is the test's, not the clock's.
    assert requests.post(f"{alpha}/sim/outage", json={"seconds": 600, "fault": "503"}, timeout=5).ok
    try:
        during = [ask() for _ in range(12)]
    finally:
        assert requests.delete(f"{alpha}/sim/outage", timeout=5).ok
    assert all(provider != "sim-alpha" for provider, _ in during)
    for _, request_id in during:  # a fallback after at most one failed attempt on the downed provider
        failed = db_rows(gw.env, "SELECT count(*) FROM routeoutcome WHERE request_id = {p} AND provider = "
                                 "'sim-alpha' AND ok = {p}", request_id, False)[0][0]
        assert failed <= 1, request_id
    end_cooldowns(gw.env)  # its circuit may probe now: the first request tries it, and it serves again
    assert [ask()[0] for _ in range(3)] == ["sim-alpha"] * 3
    ledger_ok(gw.env)
