"""The provider simulator under gunicorn + gevent, driven by the real openai SDK (and raw HTTP)."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import openai
import pydantic
import pytest
import requests
from werkzeug.test import Client

from kyma.sim.faults import Fault, FaultPicker, FaultSyntaxError, fault_from_header, parse_rates
from kyma.sim.ports import create_sims_app, provider_envs
from kyma.sim.schema_values import value_for_schema
from tests.gated import waiting
from tests.servers import start_simulator

# The simulator under gunicorn (its pure parsers run here too); it has no database, so the
# PostgreSQL pass would run it unchanged.
pytestmark = [pytest.mark.integration, pytest.mark.no_database]

USER = [{"role": "user", "content": "Hello there, simulator"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit", "days"],
                   "properties": {"city": {"type": "string", "minLength": 2},
                                  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                                  "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}}
BOOKING = {"type": "function", "function": {
    "name": "book_flight",
    "parameters": {"type": "object", "required": ["passengers", "date"], "properties": {
        "date": {"type": "string", "format": "date"},
        "passengers": {"type": "array", "minItems": 2, "items": {
            "type": "object", "required": ["name", "age"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                           "meal": {"anyOf": [{"type": "null"}, {"enum": ["veg", "any"]}]}}}},
        "direct": {"type": "boolean"}}}}}


def schema_of(tool: dict) -> dict:
    return tool["function"]["parameters"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    proc = start_simulator("sim-test", tmp_path_factory.mktemp("sim"),
                           kyma_sim_timeout_seconds="2", kyma_sim_models="m1,m2")
    yield proc
    proc.stop()


@pytest.fixture()
def oai(sim):
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="sk-test", max_retries=0, timeout=10)


def chat(sim, headers: dict | None = None, **body) -> requests.Response:
    body = {"model": "m1", "messages": USER, **body}
    return requests.post(f"{sim.url}/v1/chat/completions", json=body, headers=headers or {},
                         timeout=20, stream=bool(body.get("stream")))


def sse_lines(resp: requests.Response) -> list[str]:
    return [line[len("data: "):] for line in resp.iter_lines(decode_unicode=True) if line.startswith("data: ")]


def lines_until_dropped(resp: requests.Response) -> list[str]:
    """The data lines of a stream whose connection the simulator drops (it must drop it)."""
    got = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for line in resp.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                got.append(line[6:])
    return got


# --- plain and streamed text --------------------------------------------------------------

def test_plain_reply_quotes_the_prompt_and_reports_usage(oai):
    r = oai.chat.completions.create(model="qwen-3-32b", messages=USER)
    assert r.model == "qwen-3-32b"
    assert r.choices[0].finish_reason == "stop"
    assert '"Hello there, simulator"' in r.choices[0].message.content
    assert "sim-test" in r.choices[0].message.content
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens_details.cached_tokens == 0


def test_say_exactly_convention_and_determinism(oai):
    msgs = [{"role": "user", "content": "Please say exactly: The sky is green."}]
    a = oai.chat.completions.create(model="m1", messages=msgs)
    b = oai.chat.completions.create(model="m1", messages=msgs, seed=42, temperature=1.5)
    assert a.choices[0].message.content == "The sky is green."
    assert b.choices[0].message.content == a.choices[0].message.content


def test_max_tokens_stops_with_length(oai):
    msgs = [{"role": "user", "content": "count to 100"}]
    r = oai.chat.completions.create(model="m1", messages=msgs, max_completion_tokens=10)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens <= 10
    assert r.choices[0].message.content.startswith("1 2 3")
    r = oai.chat.completions.create(model="m1", messages=msgs, max_tokens=5)
    assert r.choices[0].message.content == "1 2 3 4 5"


def test_stop_sequence_is_not_returned(oai):
    r = oai.chat.completions.create(model="m1", messages=[{"role": "user", "content": "count to 20"}],
                                    stop=[" 7", "nope"])
    assert r.choices[0].message.content == "1 2 3 4 5 6"
    assert r.choices[0].finish_reason == "stop"


def test_n_above_one_is_rejected(oai):
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model="m1", messages=USER, n=2)
    assert exc.value.param == "n"


def test_stream_has_several_deltas_usage_chunk_and_done(sim, oai):
    plain = oai.chat.completions.create(model="m1", messages=USER).choices[0].message.content
    resp = chat(sim, stream=True, stream_options={"include_usage": True})
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-cache"
    lines = sse_lines(resp)
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([t for t in texts if t]) >= 3
    assert "".join(t for t in texts if t) == plain
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_without_include_usage_sends_no_usage(sim):
    chunks = [json.loads(x) for x in sse_lines(chat(sim, stream=True))[:-1]]
    assert all(c["choices"] for c in chunks)
    assert all(c.get("usage") is None for c in chunks)


def test_sdk_stream_helper(oai):
    with oai.chat.completions.stream(model="m1", messages=[{"role": "user", "content": "count to 12"}],
                                     stream_options={"include_usage": True}) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) >= 3
    assert final.choices[0].message.content == " ".join(str(i) for i in range(1, 13))
    assert final.usage.completion_tokens == 12


def validate(value, schema: dict, formats: bool = False) -> None:
    """jsonschema.validate, imported on first use: building its IRI grammar costs ~2 CPU-seconds, which
    every pytest worker would pay while collecting this module."""
    import jsonschema

    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker() if formats else None)


# --- tools -------------------------------------------------------------------------------------

def test_tool_call_arguments_validate_and_use_the_prompt(oai):
    r = oai.chat.completions.create(model="m1", tools=[WEATHER, BOOKING], messages=[
        {"role": "user", "content": "Use get_weather for Oslo, unit=fahrenheit days=3"}])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    validate(args, schema_of(WEATHER))
    assert args == {"city": "Oslo", "unit": "fahrenheit", "days": 3}


def test_nested_schema_and_tool_choice_modes(oai):
    named = oai.chat.completions.create(model="m1", messages=USER, tools=[WEATHER, BOOKING],
                                        tool_choice={"type": "function", "function": {"name": "book_flight"}})
    [call] = named.choices[0].message.tool_calls
    args = json.loads(call.function.arguments)
    validate(args, schema_of(BOOKING), formats=True)
    assert len(args["passengers"]) == 2
    required = oai.chat.completions.create(model="m1", messages=USER, tools=[WEATHER], tool_choice="required")
    assert required.choices[0].message.tool_calls[0].function.name == "get_weather"
    auto = oai.chat.completions.create(model="m1", messages=USER, tools=[WEATHER])
    assert auto.choices[0].message.tool_calls is None and auto.choices[0].finish_reason == "stop"
    none = oai.chat.completions.create(model="m1", tools=[WEATHER], tool_choice="none",
                                       messages=[{"role": "user", "content": "call get_weather"}])
    assert none.choices[0].message.tool_calls is None


def test_parallel_tool_calls(oai):
    msgs = [{"role": "user", "content": "First book_flight, then get_weather in Rome"}]
    r = oai.chat.completions.create(model="m1", messages=msgs, tools=[WEATHER, BOOKING])
    names = [c.function.name for c in r.choices[0].message.tool_calls]
    assert names == ["book_flight", "get_weather"]
    assert len({c.id for c in r.choices[0].message.tool_calls}) == 2
    single = oai.chat.completions.create(model="m1", messages=msgs, tools=[WEATHER, BOOKING],
                                         parallel_tool_calls=False)
    assert [c.function.name for c in single.choices[0].message.tool_calls] == ["book_flight"]


def test_streamed_tool_call_arguments_arrive_in_fragments(sim, oai):
    msgs = [{"role": "user", "content": "call get_weather for Lima"}]
    chunks = [json.loads(x) for x in sse_lines(chat(sim, stream=True, messages=msgs, tools=[WEATHER]))[:-1]]
    frags = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
             if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert frags[0]["id"].startswith("call_") and frags[0]["type"] == "function"
    assert frags[0]["function"]["name"] == "get_weather"
    assert len(frags) >= 3
    assert all(set(f) == {"index", "function"} and set(f["function"]) == {"arguments"} for f in frags[1:])
    args = json.loads("".join(f["function"]["arguments"] for f in frags))
    validate(args, schema_of(WEATHER))
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # The SDK's helper accumulates the same fragments into one valid call.
    with oai.chat.completions.stream(model="m1", messages=msgs, tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"] == "Lima"


def test_tool_result_round_trip(oai):
    msgs = [{"role": "user", "content": "get_weather in Oslo"}]
    first = oai.chat.completions.create(model="m1", messages=msgs, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    msgs += [first.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees"}]
    second = oai.chat.completions.create(model="m1", messages=msgs, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "The get_weather tool returned: Sunny, 21 degrees."


# --- structured output and vision ---------------------------------------------------------------

class Address(pydantic.BaseModel):
    street: str
    city: str


class Person(pydantic.BaseModel):
    name: str
    age: int
    role: Literal["admin", "user"]
    tags: list[str]
    address: Address
    nickname: str | None


def test_json_schema_parse_with_pydantic(oai):
    r = oai.chat.completions.parse(model="m1", response_format=Person,
                                   messages=[{"role": "user", "content": "Extract: name=Ada age=36 role=admin"}])
    person = r.choices[0].message.parsed
    assert isinstance(person, Person)
    assert (person.name, person.age, person.role) == ("Ada", 36, "admin")
    assert isinstance(person.address, Address)


def test_json_schema_parse_while_streaming(oai):
    with oai.chat.completions.stream(model="m1", response_format=Person,
                                     messages=[{"role": "user", "content": "name: Grace, age: 85"}]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed.name == "Grace"
    assert final.choices[0].message.parsed.age == 85


def test_json_object_mode(oai):
    r = oai.chat.completions.create(model="m1", messages=USER, response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_images_are_counted_not_fetched(oai):
    parts = [{"type": "text", "text": "What are these?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
             {"type": "image_url", "image_url": {"url": "http://192.0.2.1/never-fetched.png"}}]
    r = oai.chat.completions.create(model="m1", messages=[{"role": "user", "content": parts}])
    assert r.choices[0].message.content.startswith("I see 2 images.")
    assert r.usage.prompt_tokens > 2 * 700  # images are priced in the prompt


def test_repeated_long_prefix_reports_cached_tokens(oai):
    system = {"role": "system", "content": " ".join(f"rule{i} applies." for i in range(400))}
    first = oai.chat.completions.create(model="m2", messages=[system, {"role": "user", "content": "a?"}])
    second = oai.chat.completions.create(model="m2", messages=[system, {"role": "user", "content": "b?"}])
    assert first.usage.prompt_tokens > 1100
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024 and cached % 128 == 0 and cached <= second.usage.prompt_tokens
    short = [{"role": "system", "content": "brief"}, {"role": "user", "content": "x"}]
    oai.chat.completions.create(model="m2", messages=short)
    again = oai.chat.completions.create(model="m2", messages=short)
    assert again.usage.prompt_tokens_details.cached_tokens == 0  # under 1,024 tokens: never cached


def test_models_list(oai):
    assert [m.id for m in oai.models.list().data] == ["m1", "m2"]


def test_two_hundred_concurrent_streams_on_one_worker(sim):
    def one(i: int) -> bool:
        resp = chat(sim, stream=True, messages=[{"role": "user", "content": f"count to {30 + i % 5}"}])
        return sse_lines(resp)[-1] == "[DONE]"

    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(one, range(200)))
    assert results == [True] * 200


# --- faults ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault,exc,status", [
    ("429", openai.RateLimitError, 429), ("500", openai.InternalServerError, 500),
    ("502", openai.InternalServerError, 502), ("503", openai.InternalServerError, 503)])
def test_status_faults(oai, fault, exc, status):
    with pytest.raises(exc) as caught:
        oai.chat.completions.create(model="m1", messages=USER, extra_headers={"X-Sim-Fault": fault})
    assert caught.value.status_code == status
    assert caught.value.body["message"]
    if fault == "429":
        assert caught.value.response.headers["Retry-After"] == "1"


def test_context_length_fault(oai):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="m1", messages=USER, extra_headers={"X-Sim-Fault": "context-length"})
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length" in caught.value.message


def test_refuse_drops_the_connection(oai, sim):
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="m1", messages=USER, extra_headers={"X-Sim-Fault": "refuse"})
    assert chat(sim).status_code == 200  # the simulator itself is fine afterwards


def test_timeout_sleeps_before_the_first_byte(sim):
    with pytest.raises(requests.ReadTimeout):
        requests.post(f"{sim.url}/v1/chat/completions", json={"model": "m1", "messages": USER},
                      headers={"X-Sim-Fault": "timeout"}, timeout=(2, 0.5))


def test_stall_sends_some_chunks_then_goes_silent(sim):
    resp = requests.post(f"{sim.url}/v1/chat/completions", headers={"X-Sim-Fault": "stall:2"},
                         json={"model": "m1", "messages": USER, "stream": True}, stream=True, timeout=(2, 0.5))
    got = []
    with pytest.raises(requests.ConnectionError):  # urllib3's read timeout surfaces as ConnectionError
        for line in resp.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                got.append(json.loads(line[6:]))
    assert len(got) == 2


def test_plain_stall_sends_headers_then_waits(sim):
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{sim.url}/v1/chat/completions", headers={"X-Sim-Fault": "stall"},
                      json={"model": "m1", "messages": USER}, timeout=(2, 0.5)).json()


def test_cut_ends_the_stream_abruptly_without_done(sim):
    got = lines_until_dropped(chat(sim, {"X-Sim-Fault": "cut:3"}, stream=True))
    assert len(got) == 3 and "[DONE]" not in got
    assert all(json.loads(x)["choices"] for x in got)


def test_malformed_first_chunk(sim):
    lines = sse_lines(chat(sim, {"X-Sim-Fault": "malformed"}, stream=True))
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])
    assert lines[-1] == "[DONE]"


def test_malformed_stream_breaks_the_sdk(oai):
    with pytest.raises(json.JSONDecodeError):
        for _ in oai.chat.completions.create(model="m1", messages=USER, stream=True,
                                             extra_headers={"X-Sim-Fault": "malformed:2"}):
            pass


@pytest.mark.parametrize("fault", ["cut", "malformed"])
def test_plain_body_faults_are_invalid_json(sim, fault):
    resp = chat(sim, {"X-Sim-Fault": fault})
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        json.loads(resp.content)


def test_no_done_sends_everything_but_the_terminator(sim):
    lines = sse_lines(chat(sim, {"X-Sim-Fault": "no-done"}, stream=True, stream_options={"include_usage": True}))
    assert "[DONE]" not in lines
    assert json.loads(lines[-1])["usage"]["total_tokens"] > 0


def test_no_usage_in_plain_and_stream(sim, oai):
    r = oai.chat.completions.create(model="m1", messages=USER, extra_headers={"X-Sim-Fault": "no-usage"})
    assert r.usage is None and r.choices[0].message.content
    lines = sse_lines(chat(sim, {"X-Sim-Fault": "no-usage"}, stream=True, stream_options={"include_usage": True}))
    assert lines[-1] == "[DONE]"
    assert all(json.loads(x).get("usage") is None for x in lines[:-1])


def test_header_targets_one_provider_and_model(sim):
    spec = "sim-other=503,sim-test@m1=429,*=500"
    assert chat(sim, {"X-Sim-Fault": spec}).status_code == 429
    assert chat(sim, {"X-Sim-Fault": spec}, model="m2").status_code == 500
    assert chat(sim, {"X-Sim-Fault": "sim-other=503"}).status_code == 200
    assert chat(sim, {"X-Sim-Fault": "bogus"}).status_code == 400


def test_stats_count_requests_by_fault(sim):
    assert requests.post(f"{sim.url}/sim/reset", timeout=5).json() == {"ok": True}
    chat(sim)
    chat(sim, {"X-Sim-Fault": "503"})
    chat(sim, {"X-Sim-Fault": "503"}, model="m2")
    stats = requests.get(f"{sim.url}/sim/stats", timeout=5).json()
    assert stats["name"] == "sim-test"
    assert stats["requests"] == 3
    assert stats["by_fault"] == {"none": 1, "503": 2}
    assert stats["by_model"] == {"m1": 2, "m2": 1}


def test_configured_rates_seed_and_api_key(tmp_path):
    proc = start_simulator("sim-flaky", tmp_path, kyma_sim_faults="503:0.5,429:0.25",
                           kyma_sim_seed="7", kyma_sim_api_key="sekrit")
    try:
        assert chat(proc).status_code == 401
        auth = {"Authorization": "Bearer sekrit"}
        statuses = [chat(proc, auth).status_code for _ in range(40)]
        assert {200, 429, 503} == set(statuses)
        assert chat(proc, {**auth, "X-Sim-Fault": "none"}).status_code == 200
        stats = requests.get(f"{proc.url}/sim/stats", timeout=5).json()
        assert stats["by_fault"].get("503") == statuses.count(503)
        assert "authorization" not in {k.lower() for k in stats["last_request"]["headers"]}
    finally:
        proc.stop()
    # The same seed replays the same fault sequence.
    picker = FaultPicker("sim-flaky", parse_rates("503:0.5,429:0.25"), 7)
    replay = [picker.pick(None, "m1") for _ in range(40)]
    expected = {None: 200, "503": 503, "429": 429}
    assert [expected[f.kind if f else None] for f in replay] == statuses


def test_the_three_providers_share_one_process_and_each_keeps_its_own_state(simulators):
    base, sims = simulators
    assert [s.port for s in sims] == [base, base + 1, base + 2] and len({s.popen.pid for s in sims}) == 1
    assert [requests.get(f"{s.url}/sim/stats", timeout=5).json()["name"] for s in sims] == [
        "sim-alpha", "sim-beta", "sim-gamma"]
    model = f"m-{uuid.uuid4().hex[:8]}"  # the simulators are shared: count this test's requests only
    beta = sims[1]
    try:
        assert requests.post(f"{beta.url}/sim/outage", json={"seconds": 30, "fault": "503"}, timeout=5).ok
        answers = [chat(s, model=model) for s in sims]
    finally:
        assert requests.delete(f"{beta.url}/sim/outage", timeout=5).ok
    assert [r.status_code for r in answers] == [200, 503, 200]
    assert [r.headers["X-Sim-Provider"] for r in answers] == ["sim-alpha", "sim-beta", "sim-gamma"]
    assert chat(sims[0], model=model).status_code == 200
    counts = [requests.get(f"{s.url}/sim/stats", timeout=5).json()["by_model"].get(model) for s in sims]
    assert counts == [2, 1, 1]


# --- pure parts ----------------------------------------------------------------------------------

def test_each_port_gets_its_provider_with_the_shared_settings_and_its_own():
    env = {"KYMA_SIM_NAMES": "sim-a, sim-b", "KYMA_SIM_PORTS": "5001,5002", "KYMA_SIM_SEED": "3",
           "KYMA_SIM_NAME": "ignored", "HOME": "/x",
           "KYMA_SIM_OVERRIDES": json.dumps({"sim-b": {"KYMA_SIM_FAULTS": "503:1", "KYMA_SIM_SEED": 9}})}
    envs = provider_envs(env)
    assert envs[5001] == {**env, "KYMA_SIM_NAME": "sim-a"}
    assert envs[5002]["KYMA_SIM_NAME"] == "sim-b" and envs[5002]["KYMA_SIM_FAULTS"] == "503:1"
    assert envs[5002]["KYMA_SIM_SEED"] == "9"
    client = Client(create_sims_app(env))  # no socket here: the port is the URL's (SERVER_PORT)
    body = {"model": "m", "messages": USER}
    assert client.post("/v1/chat/completions", base_url="http://localhost:5001", json=body).status_code == 200
    failed = client.post("/v1/chat/completions", base_url="http://localhost:5002", json=body)
    assert failed.status_code == 503 and failed.headers["X-Sim-Provider"] == "sim-b"
    assert client.get("/v1/models", base_url="http://localhost:5003").status_code == 404
    for bad in ({"KYMA_SIM_NAMES": "a,b", "KYMA_SIM_PORTS": "1"},
                {"KYMA_SIM_NAMES": "a", "KYMA_SIM_PORTS": "1", "KYMA_SIM_OVERRIDES": '{"b": {}}'},
                {"KYMA_SIM_NAMES": "a,b", "KYMA_SIM_PORTS": "1,1"}, {"KYMA_SIM_NAMES": "a,b", "KYMA_SIM_PORTS": "1,01"},
                {"KYMA_SIM_NAMES": "a", "KYMA_SIM_PORTS": "x"},
                {"KYMA_SIM_NAMES": "a", "KYMA_SIM_PORTS": "1", "KYMA_SIM_OVERRIDES": '{"a": "x"}'}):
        with pytest.raises(ValueError, match="KYMA_SIM_"):  # ours, naming the variable
            provider_envs(bad)


def test_once_faults_hit_the_first_request_and_spare_its_retry(sim):
    messages = [{"role": "user", "content": "once-429 " + uuid.uuid4().hex}]
    first = requests.post(f"{sim.url}/v1/chat/completions", json={"model": "m1", "messages": messages},
                          headers={"X-Sim-Fault": "429:2+once"}, timeout=10)
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"
    again = requests.post(f"{sim.url}/v1/chat/completions", json={"model": "m1", "messages": messages},
                          headers={"X-Sim-Fault": "429:2+once"}, timeout=10)
    assert again.status_code == 200
    other = [{"role": "user", "content": "once-500 " + uuid.uuid4().hex}]
    codes = [requests.post(f"{sim.url}/v1/chat/completions", json={"model": "m1", "messages": other},
                           headers={"X-Sim-Fault": "500+once"}, timeout=10).status_code for _ in range(3)]
    assert codes == [500, 200, 200]


def test_a_gate_holds_requests_until_released_and_then_they_are_answered_as_usual(sim):
    def wait_for_gated(n: int) -> None:
        deadline = time.monotonic() + 15  # a bound on the polling, inside chat()'s read timeout
        while waiting([sim.url]) != n:
            assert time.monotonic() < deadline, f"{waiting([sim.url])} requests at the gate, not {n}"
            time.sleep(0.02)

    with ThreadPoolExecutor(3) as pool:
        first = [pool.submit(chat, sim, {"X-Sim-Fault": "gate"}) for _ in range(2)]
        wait_for_gated(2)
        assert not any(f.done() for f in first), "held until released"
        assert requests.post(f"{sim.url}/sim/gate/release", timeout=5).json() == {"released": 2}
        answers = [f.result() for f in first]
        assert [r.status_code for r in answers] == [200, 200]
        assert all(r.json()["choices"][0]["message"]["content"] for r in answers)
        later = pool.submit(chat, sim, {"X-Sim-Fault": "gate"})  # a release lets through those waiting only
        wait_for_gated(1)
        assert not later.done()
        assert requests.post(f"{sim.url}/sim/gate/release", timeout=5).json() == {"released": 1}
        assert later.result().status_code == 200
    assert waiting([sim.url]) == 0
    never = chat(sim, {"X-Sim-Fault": "gate:0"})  # a gate's number bounds the wait: 0, no wait at all
    assert never.status_code == 504 and never.json()["error"]["code"] == "gate_timeout"
    assert chat(sim, {"X-Sim-Fault": "gate:601"}).status_code == 400, "600 seconds at most"


def test_an_outage_fails_every_request_for_its_window_then_ends(sim):
    try:
        assert requests.post(f"{sim.url}/sim/outage", json={"seconds": 30, "fault": "503"}, timeout=5).ok
        assert chat(sim).status_code == 503
        assert chat(sim, {"X-Sim-Fault": "none"}).status_code == 503  # an outage beats the header
    finally:
        assert requests.delete(f"{sim.url}/sim/outage", timeout=5).ok
    assert chat(sim).status_code == 200
    # A window ends by itself: polled until it has (a hang guard, not a timing assertion).
    assert requests.post(f"{sim.url}/sim/outage", json={"seconds": 0.2}, timeout=5).ok
    deadline = time.monotonic() + 30
    while (status := chat(sim).status_code) == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 200


def test_a_trailing_assistant_message_gets_the_rest_of_the_answer(sim):
    whole = chat(sim, messages=[{"role": "user", "content": "count to 12"}]).json()
    assert whole["choices"][0]["message"]["content"] == " ".join(str(i) for i in range(1, 13))
    rest = chat(sim, messages=[{"role": "user", "content": "count to 12"},
                               {"role": "assistant", "content": "1 2 3 4 5"}]).json()
    assert rest["choices"][0]["message"]["content"] == " 6 7 8 9 10 11 12"
    lines = sse_lines(chat(sim, stream=True, messages=[{"role": "user", "content": "count to 12"},
                                                       {"role": "assistant", "content": "1 2 3 4 5"}]))
    text = "".join(json.loads(x)["choices"][0]["delta"].get("content") or "" for x in lines[:-1])
    assert text == " 6 7 8 9 10 11 12" and lines[-1] == "[DONE]"


def test_a_provider_that_rejects_prefill(tmp_path):
    proc = start_simulator("sim-noprefill", tmp_path, kyma_sim_prefill="reject")
    try:
        r = requests.post(f"{proc.url}/v1/chat/completions", timeout=10, json={
            "model": "m", "messages": [{"role": "user", "content": "count to 5"},
                                       {"role": "assistant", "content": "1 2"}]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "prefill_unsupported"
        assert requests.post(f"{proc.url}/v1/chat/completions", timeout=10, json={
            "model": "m", "messages": [{"role": "user", "content": "count to 5"}]}).status_code == 200
    finally:
        proc.stop()


def test_slow_first_sends_headers_at_once_and_the_first_token_later(sim):
    resp = requests.post(f"{sim.url}/v1/chat/completions", headers={"X-Sim-Fault": "slow-first:30"},
                         json={"model": "m1", "messages": USER, "stream": True}, stream=True, timeout=(10, 5))
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    with pytest.raises(requests.ConnectionError):  # then nothing within the read timeout, the token is 30 s off
        next(resp.iter_lines())
    resp.close()


def test_garbage_keeps_coming_and_the_stream_never_ends_cleanly(sim):
    got = lines_until_dropped(chat(sim, {"X-Sim-Fault": "garbage:2"}, stream=True))
    assert [json.loads(x)["choices"] is not None for x in got[:2]] == [True, True]
    assert len(got) > 3 and all(x.startswith("{garbage") for x in got[2:]) and "[DONE]" not in got


def test_no_finish_ends_with_done_but_without_a_finish_reason(sim):
    lines = sse_lines(chat(sim, {"X-Sim-Fault": "no-finish:3"}, stream=True, stream_options={"include_usage": True}))
    assert lines[-1] == "[DONE]" and len(lines) == 4
    assert not any(json.loads(x)["choices"][0].get("finish_reason") for x in lines[:-1])


def test_fault_header_syntax():
    assert fault_from_header("503", "a", "m") == Fault("503")
    assert fault_from_header("b=500, a@x=429, a=cut:5", "a", "m") == Fault("cut", 5)
    assert fault_from_header("b=500", "a", "m") is None
    assert fault_from_header("@m=stall", "a", "m") == Fault("stall", 3)
    assert fault_from_header("a=429:4+once", "a", "m") == Fault("429", 4, once=True)
    assert fault_from_header("slow-first", "a", "m") == Fault("slow-first", 20)
    with pytest.raises(FaultSyntaxError):
        fault_from_header("explode", "a", "m")
    with pytest.raises(FaultSyntaxError):
        parse_rates("503:0.7,500:0.5")
    with pytest.raises(FaultSyntaxError, match="gate"):
        parse_rates("gate:0.1")  # nobody would release it


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": ["string", "null"], "maxLength": 3},
                                      "b": {"type": "number", "exclusiveMinimum": 5},
                                      "c": {"const": "fixed"}, "d": {"type": "array", "prefixItems": [
                                          {"type": "integer"}, {"type": "boolean"}], "minItems": 2}},
     "required": ["a", "b", "c", "d"]},
    {"$defs": {"Node": {"type": "object", "required": ["value"], "properties": {
        "value": {"type": "integer", "multipleOf": 5, "minimum": 3},
        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
     "$ref": "#/$defs/Node"},
    {"allOf": [{"type": "object", "properties": {"x": {"type": "string", "format": "email"}}, "required": ["x"]},
               {"properties": {"y": {"type": "string", "minLength": 12}}, "required": ["y"]}]},
])
def test_schema_values_validate(schema):
    validate(value_for_schema(schema), schema, formats=True)
