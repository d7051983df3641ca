"""Chat completions end to end: the real openai SDK → gunicorn (gevent) gateway → simulator processes."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import openai
import pydantic
import pytest
import requests

from tests.servers import db_rows

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "Hello there"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city", "unit"]}}}
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGA"
         "WjR9awAAAABJRU5ErkJggg==")


def _concurrently(*calls):
    """The results of zero-argument calls run at the same time, in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def _post(gateway, account, body, fault=None, **headers):
    h = {"Authorization": f"Bearer {account['api_key']}", **headers}
    if fault:
        h["X-Kyma-Sim-Fault"] = fault
    return requests.post(f"{gateway.url}/v1/chat/completions", json=body, headers=h, timeout=30)


def test_plain_completion_has_usage_cost_and_headers(oai):
    raw = oai.chat.completions.with_raw_response.create(model="qwen-3-32b", messages=HELLO, max_tokens=64)
    resp = raw.parse()
    assert resp.model == "qwen-3-32b"
    assert "Hello there" in resp.choices[0].message.content
    usage = resp.usage.model_dump()
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["cost"] > 0 and usage["cache_discount"] == 0 and usage["cached_tokens"] == 0
    assert raw.headers["X-Kyma-Model"] == "qwen-3-32b"
    assert raw.headers["X-Kyma-Fallback"] == "false"
    assert "X-Kyma-Fallback-Layer" not in raw.headers
    assert raw.headers["X-Kyma-Provider"] == "sim-alpha" and raw.headers["X-Kyma-Simulated"] == "true"
    assert raw.headers["X-Request-Id"] and float(raw.headers["X-Kyma-Overhead-Ms"]) >= 0
    assert int(raw.headers["x-ratelimit-remaining-requests"]) >= 0


def test_a_plain_answer_keeps_the_openai_field_order(gateway, account):
    # Like every other endpoint's JSON (jsonify): the completion's own order, id first, not sorted.
    r = _post(gateway, account, {"model": "qwen-3-32b", "messages": HELLO, "max_tokens": 16})
    assert r.status_code == 200
    assert list(r.json())[:4] == ["id", "object", "created", "model"]


def test_cost_matches_catalog_prices(oai, gateway):
    resp = oai.chat.completions.create(model="glm-5.1", messages=HELLO, max_tokens=64)
    price = requests.get(f"{gateway.url}/v1/models/glm-5.1", timeout=5).json()["pricing"]
    u = resp.usage
    expected = (u.prompt_tokens * price["input_per_1m"] + u.completion_tokens * price["output_per_1m"]) / 1e6
    assert resp.usage.model_dump()["cost"] == pytest.approx(expected, abs=1e-6)


def test_stream_relays_chunks_and_usage_rides_on_final_chunk(oai):
    chunks = list(oai.chat.completions.create(model="qwen-3-32b", messages=HELLO, max_tokens=64, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Hello there" in text
    assert len(chunks) > 3
    assert all(c.choices for c in chunks), "no usage-only chunk unless the client asked"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens > 0 and chunks[-1].usage.model_dump()["cost"] > 0
    assert len({c.id for c in chunks}) == 1


def test_stream_with_include_usage_sends_usage_chunk(oai):
    chunks = list(oai.chat.completions.create(model="qwen-3-32b", messages=HELLO, max_tokens=64, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_stream_helper(oai):
    with oai.chat.completions.stream(model="deepseek-v3", messages=HELLO, max_tokens=64) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert "Hello there" in final.choices[0].message.content
    assert final.usage.total_tokens > 0


def test_tool_call_round_trip_with_streamed_arguments(oai):
    messages = [{"role": "user", "content": "What's the weather in Oslo? Use get_weather."}]
    chunks = list(oai.chat.completions.create(model="kimi-k2.5", messages=messages, tools=[WEATHER_TOOL],
                                              stream=True, max_tokens=200))
    fragments = [tc.function.arguments for c in chunks if c.choices
                 for tc in (c.choices[0].delta.tool_calls or []) if tc.function and tc.function.arguments]
    assert len(fragments) > 1, "arguments arrive as several fragments"
    args = json.loads("".join(fragments))
    assert set(args) >= {"city", "unit"} and args["unit"] in ("c", "f")
    first = next(tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or []))
    assert first.id and first.function.name == "get_weather"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    messages += [{"role": "assistant", "tool_calls": [{"id": first.id, "type": "function", "function": {
        "name": "get_weather", "arguments": json.dumps(args)}}]},
        {"role": "tool", "tool_call_id": first.id, "content": "12 degrees and raining"}]
    reply = oai.chat.completions.create(model="kimi-k2.5", messages=messages, tools=[WEATHER_TOOL], max_tokens=200)
    assert reply.choices[0].finish_reason == "stop"
    assert "12 degrees" in reply.choices[0].message.content


class Weather(pydantic.BaseModel):
    city: str
    temperature: float
    raining: bool


def test_json_schema_with_sdk_parse(oai):
    parsed = oai.chat.completions.parse(model="gemini-2.5-flash", messages=HELLO, response_format=Weather,
                                        max_tokens=300)
    assert isinstance(parsed.choices[0].message.parsed, Weather)


def test_json_object_mode(oai):
    resp = oai.chat.completions.create(model="deepseek-v3", messages=HELLO, max_tokens=200,
                                       response_format={"type": "json_object"})
    assert isinstance(json.loads(resp.choices[0].message.content), dict)


def test_vision_to_vision_model_and_refusal_for_text_model(oai):
    content = [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": PIXEL}}]
    resp = oai.chat.completions.create(model="vision", messages=[{"role": "user", "content": content}], max_tokens=64)
    assert resp.model == "gemma-4-31b"
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model="qwen-3-32b", messages=[{"role": "user", "content": content}], max_tokens=8)
    assert "image input" in exc.value.message


def test_alias_resolves_and_is_reported(oai):
    raw = oai.chat.completions.with_raw_response.create(model="fast", messages=HELLO, max_tokens=32)
    assert raw.parse().model == "llama-3.3-70b"
    assert raw.headers["X-Kyma-Alias"] == "fast" and raw.headers["X-Kyma-Model"] == "llama-3.3-70b"


def test_tools_to_model_without_tools_is_400(oai):
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model="deepseek-r1", messages=HELLO, tools=[WEATHER_TOOL], max_tokens=8)
    assert exc.value.code == "unsupported_feature"


def test_unknown_model_is_404_model_not_found(oai):
    with pytest.raises(openai.NotFoundError) as exc:
        oai.chat.completions.create(model="no-such-model", messages=HELLO)
    assert exc.value.code == "model_not_found"


@pytest.mark.parametrize("body, param", [
    ({"model": "fast"}, "messages"),
    ({"messages": HELLO}, "model"),
    ({"model": "fast", "messages": HELLO, "temperature": 3}, "temperature"),
    ({"model": "fast", "messages": HELLO, "max_tokens": -1}, "max_tokens"),
    ({"model": "fast", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "fast", "messages": HELLO, "stream": "yes"}, "stream"),
    ({"model": "fast", "messages": HELLO, "tools": [{"type": "function"}]}, "tools[0]"),
    ({"model": "fast", "messages": HELLO, "response_format": {"type": "xml"}}, "response_format.type"),
])
def test_invalid_input_is_400_naming_the_param(gateway, account, body, param):
    r = _post(gateway, account, body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"


def test_non_json_body_is_400(gateway, account):
    r = requests.post(f"{gateway.url}/v1/chat/completions", data="{nope",
                      headers={"Authorization": f"Bearer {account['api_key']}"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_missing_key_is_401(gateway):
    r = requests.post(f"{gateway.url}/v1/chat/completions", json={"model": "fast", "messages": HELLO}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


# Each fault on the first route ends in a transparent fallback to the next provider (layer 1).
@pytest.mark.parametrize("fault", ["429", "500", "502", "503", "refuse", "timeout", "malformed"])
@pytest.mark.parametrize("stream", [False, True])
def test_fault_on_first_route_falls_back_to_layer_1(gateway, account, fault, stream):
    body = {"model": "glm-4.5-air", "messages": HELLO, "max_tokens": 32, "stream": stream}
    if stream and fault == "malformed":
        fault = "garbage:0"  # one bad event in a stream is skipped; nothing but bad ones is a failure
    r = _post(gateway, account, body, fault=f"sim-alpha={fault}")
    assert r.status_code == 200, r.text
    assert r.headers["X-Kyma-Fallback"] == "true" and r.headers["X-Kyma-Fallback-Layer"] == "1"
    assert r.headers["X-Kyma-Provider"] == "sim-beta" and r.headers["X-Kyma-Model"] == "glm-4.5-air"
    if stream:
        assert r.text.rstrip().endswith("data: [DONE]") and '"usage"' in r.text


def test_all_routes_of_model_failing_falls_back_to_sibling_layer_2(gateway, account):
    r = _post(gateway, account, {"model": "minimax-m2.7", "messages": HELLO, "max_tokens": 32},
              fault="*@minimax-m2.7=503")
    assert r.status_code == 200
    assert r.headers["X-Kyma-Fallback-Layer"] == "2" and r.headers["X-Kyma-Model"] == "minimax-m2.5"
    assert r.json()["model"] == "minimax-m2.5"


def test_model_family_failing_falls_back_to_comparable_model_layer_3(gateway, account):
    r = _post(gateway, account, {"model": "llama-3.3-70b", "messages": HELLO, "max_tokens": 32},
              fault="*@llama-3.3-70b=500")
    assert r.status_code == 200
    assert r.headers["X-Kyma-Fallback-Layer"] == "3" and r.headers["X-Kyma-Model"] != "llama-3.3-70b"


def test_every_route_failing_is_an_error_not_a_silent_success(gateway, account):
    # Two independent requests, each waiting through every fallback's backoff: sent together.
    plain, streamed = _concurrently(
        lambda: _post(gateway, account, {"model": "qwen-3-32b", "messages": HELLO, "max_tokens": 32}, fault="*=502"),
        lambda: _post(gateway, account, {"model": "qwen-3-32b", "messages": HELLO, "max_tokens": 32, "stream": True},
                      fault="*=503"))
    assert plain.status_code == 502 and plain.json()["error"]["type"] == "upstream_error"
    assert streamed.status_code == 503 and streamed.headers["Content-Type"].startswith("application/json")


def test_context_length_error_is_not_retried_on_same_window(gateway, account):
    r = _post(gateway, account, {"model": "qwen-3-32b", "messages": HELLO, "max_tokens": 32,
                                 "models": ["qwen-3-32b"]}, fault="*=context-length")
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_failure_after_first_byte_with_no_candidate_to_continue_ends_stream_with_error_event(oai, fault):
    stream = oai.chat.completions.create(model="glm-4.7-flash", messages=HELLO, max_tokens=64, stream=True,
                                         extra_body={"provider": {"only": ["sim-alpha"], "allow_fallbacks": False}},
                                         extra_headers={"X-Kyma-Sim-Fault": f"sim-alpha={fault}"})
    received = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            received.append(chunk)
    assert received, "some chunks arrived before the failure"
    assert "upstream" in exc.value.message


def test_missing_done_after_finish_still_completes(oai):
    chunks = list(oai.chat.completions.create(model="glm-4.7-flash", messages=HELLO, max_tokens=64, stream=True,
                                              extra_headers={"X-Kyma-Sim-Fault": "sim-alpha=no-done"}))
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_missing_usage_is_counted_by_the_gateway(gateway, account, stream):
    r = _post(gateway, account, {"model": "glm-4.7-flash", "messages": HELLO, "max_tokens": 64, "stream": stream},
              fault="sim-alpha=no-usage")
    assert r.status_code == 200
    if stream:
        last = [json.loads(line[6:]) for line in r.text.splitlines()
                if line.startswith("data: {")][-1]
        usage = last["usage"]
    else:
        usage = r.json()["usage"]
    assert usage["estimated"] is True and usage["completion_tokens"] > 0 and usage["cost"] > 0


def test_models_list_and_provider_preferences_steer_routing(gateway, account):
    r = _post(gateway, account, {"model": "qwen-3-32b", "messages": HELLO, "max_tokens": 16,
                                 "provider": {"order": ["sim-gamma"]}})
    assert r.headers["X-Kyma-Provider"] == "sim-gamma" and r.headers["X-Kyma-Fallback"] == "false"
    r = _post(gateway, account, {"model": "qwen-3-32b", "messages": HELLO, "max_tokens": 16,
                                 "provider": {"only": ["sim-alpha"], "allow_fallbacks": False}},
              fault="sim-alpha=500")
    assert r.status_code == 502, "no fallback was allowed"
    r = _post(gateway, account, {"model": "qwen-3-32b", "models": ["qwen-3-32b", "glm-4.5-air"], "messages": HELLO,
                                 "max_tokens": 16}, fault="*@qwen-3-32b=500")
    assert r.status_code == 200 and r.headers["X-Kyma-Model"] == "glm-4.5-air"


@pytest.mark.parametrize("tool_calls, param", [
    ("abc", "messages[0].tool_calls"),
    ([{"function": "f"}], "messages[0].tool_calls[0].function"),
    ([{"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}],
     "messages[0].tool_calls[0].function.arguments"),
])
def test_malformed_tool_call_history_is_400_and_logged(gateway, account, tool_calls, param):
    body = {"model": "fast", "max_tokens": 8, "messages": [
        {"role": "assistant", "content": None, "tool_calls": tool_calls}, {"role": "user", "content": "hi"}]}
    r = _post(gateway, account, body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    rows = db_rows(gateway.env, "select status from requestlog where request_id={p}", r.headers["X-Request-Id"])
    assert rows == [(400,)]


def test_402_names_a_max_tokens_that_is_then_accepted(gateway, account):
    import re

    # About 80k prompt tokens plus 65,536 output tokens at glm-5.1 prices is more than the $0.50 credit.
    body = {"model": "glm-5.1", "messages": [{"role": "user", "content": "word " * 80_000}], "max_tokens": 65536}
    refused = _post(gateway, account, body)
    assert refused.status_code == 402 and refused.json()["error"]["type"] == "insufficient_credits", refused.text
    suggested = int(re.search(r"Lower max_tokens to (\d+)", refused.json()["error"]["message"]).group(1))
    assert 0 < suggested < 65536
    assert _post(gateway, account, dict(body, max_tokens=suggested)).status_code == 200
