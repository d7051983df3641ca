"""/v1/responses on the real server (gunicorn, gevent workers, simulated providers) with the openai SDK."""

from __future__ import annotations

import json
import uuid

import openai
import pytest
import requests
from pydantic import BaseModel

from tests.accounts import balance
from tests.conftest import register
from tests.servers import db_rows

pytestmark = pytest.mark.integration

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def _log(gateway, request_id: str) -> tuple:
    return db_rows(gateway.env, "select endpoint, status, model_served, stream, cost_micros, note from requestlog "
                   "where request_id={p}", request_id)[0]


def test_create_answers_logs_and_bills(oai, gateway, account):
    before = balance(gateway, account)
    raw = oai.responses.with_raw_response.create(model="kimi-k2.5", input="say exactly: Hello from Kyma",
                                                 instructions="Be brief.", metadata={"run": "1"})
    resp = raw.parse()
    assert resp.id.startswith("resp_") and resp.object == "response" and resp.status == "completed"
    assert resp.output_text == "Hello from Kyma" and resp.model == raw.headers["X-Kyma-Model"] == "kimi-k2.5"
    assert resp.output[0].type == "message" and resp.output[0].id.startswith("msg_")
    assert resp.instructions == "Be brief." and resp.metadata == {"run": "1"} and resp.store is True
    usage = resp.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    cost = usage.model_extra["cost"]
    assert cost > 0 and before - balance(gateway, account) == pytest.approx(cost, abs=1e-6)
    endpoint, status, served, stream, cost_micros, _note = _log(gateway, raw.headers["X-Request-Id"])
    assert (endpoint, status, served, bool(stream)) == ("responses", 200, "kimi-k2.5", False)
    assert cost_micros / 1e6 == pytest.approx(cost, abs=1e-6)
    assert raw.headers.get("Content-Encoding") in (None, "identity")


def test_stream_events_and_final_response(oai, gateway, account):
    with oai.responses.stream(model="kimi-k2.5", input="count to 30") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == " ".join(str(i) for i in range(1, 31)) and final.status == "completed"
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert kinds.count("response.output_text.delta") > 3
    assert final.usage.output_tokens > 0 and final.usage.model_extra["cost"] > 0
    assert oai.responses.retrieve(final.id).output_text == final.output_text  # stored before completed was sent


def test_max_output_tokens_makes_an_incomplete_response(oai):
    resp = oai.responses.create(model="kimi-k2.5", input="count to 500", max_output_tokens=16)
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output[0].status == "incomplete" and resp.max_output_tokens == 16


def test_function_tool_round_trip(oai):
    first = oai.responses.create(model="kimi-k2.5", input="Use get_weather for city=Oslo", tools=[WEATHER])
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert json.loads(call.arguments) == {"city": "Oslo"} and call.id.startswith("fc_")
    assert [t.name for t in first.tools] == ["get_weather"] and first.output_text == ""
    follow = [{"role": "user", "content": "Use get_weather for city=Oslo"}, call.model_dump(exclude_none=True),
              {"type": "function_call_output", "call_id": call.call_id, "output": "4 degrees and rain"}]
    with oai.responses.stream(model="kimi-k2.5", input=follow, tools=[WEATHER], store=False) as stream:
        answer = stream.get_final_response()
    assert "4 degrees and rain" in answer.output_text


def test_streamed_function_call(oai):
    with oai.responses.stream(model="kimi-k2.5", input="Use get_weather for city=Bergen", tools=[WEATHER]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    assert final.output[0].type == "function_call" and json.loads(final.output[0].arguments) == {"city": "Bergen"}


class Weather(BaseModel):
    city: str
    temperature: int


def test_parse_with_a_pydantic_model(oai):
    parsed = oai.responses.parse(model="kimi-k2.5", input="The weather: city=Oslo temperature=4", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Oslo", temperature=4)
    assert parsed.text.format.type == "json_schema" and parsed.text.format.name == "Weather"


def test_previous_response_id_get_and_delete(oai, gateway):
    first = oai.responses.create(model="kimi-k2.5", input="Use get_weather for city=Oslo", tools=[WEATHER])
    call = first.output[0]
    second = oai.responses.create(model="kimi-k2.5", previous_response_id=first.id, tools=[WEATHER],
                                  input=[{"type": "function_call_output", "call_id": call.call_id,
                                          "output": "4 degrees"}])
    assert second.previous_response_id == first.id and second.output_text == "The get_weather tool returned: 4 degrees."
    third = oai.responses.create(model="kimi-k2.5", previous_response_id=second.id, input="say exactly: bye")
    assert third.output_text == "bye"
    assert oai.responses.retrieve(second.id).model_dump() == second.model_dump()

    other = openai.OpenAI(base_url=f"{gateway.url}/v1", max_retries=0, timeout=30,
                          api_key=register(gateway.url, f"other-{uuid.uuid4().hex[:8]}@example.com")["api_key"])
    for attempt in (lambda: other.responses.retrieve(first.id), lambda: other.responses.delete(first.id),
                    lambda: other.responses.create(model="kimi-k2.5", previous_response_id=first.id, input="hi")):
        with pytest.raises(openai.NotFoundError):
            attempt()

    oai.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as info:
        oai.responses.retrieve(first.id)
    assert info.value.body["code"] == "not_found"
    with pytest.raises(openai.NotFoundError) as info:
        oai.responses.create(model="kimi-k2.5", previous_response_id=first.id, input="hi")
    assert info.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        oai.responses.delete(first.id)


def test_a_nul_in_text_is_stored_and_served_back_and_in_a_model_name_logged(oai, gateway):
    # PostgreSQL refuses NUL in text: stored responses keep it escaped in their JSON, the log replaces it.
    resp = oai.responses.create(model="kimi-k2.5", input="say exactly: a\x00b", metadata={"k": "v\x00"})
    assert resp.output_text == "a\x00b" and resp.metadata == {"k": "v\x00"}
    assert oai.responses.retrieve(resp.id).model_dump() == resp.model_dump()
    after = oai.responses.create(model="kimi-k2.5", previous_response_id=resp.id, input="say exactly: ok")
    assert after.output_text == "ok"
    with pytest.raises(openai.NotFoundError) as info:
        oai.responses.create(model="kimi\x00", input="hi")
    rid = info.value.response.headers["X-Request-Id"]
    assert db_rows(gateway.env, "select status, model_requested from requestlog where request_id={p}", rid) == [
        (404, "kimi\ufffd")]


def test_store_false_keeps_nothing(oai, gateway):
    resp = oai.responses.create(model="kimi-k2.5", input="say exactly: secret", store=False)
    assert resp.store is False and resp.output_text == "secret"
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(resp.id)
    assert db_rows(gateway.env, "select count(*) from storedresponse where id={p}", resp.id) == [(0,)]


def test_only_hosted_tools_is_a_400_naming_the_tool(oai):
    with pytest.raises(openai.BadRequestError) as info:
        oai.responses.create(model="kimi-k2.5", input="search the web", tools=[{"type": "web_search"}])
    assert "web_search" in info.value.body["message"] and info.value.body["param"] == "tools"


def test_a_failure_after_the_first_byte_ends_with_response_failed(gateway, account):
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=account["api_key"], max_retries=0, timeout=30,
                        default_headers={"X-Kyma-Sim-Fault": "cut:6"})
    events = list(sdk.responses.create(model="kimi-k2.5", input="count to 200", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.failed"
    assert events[-1].response.status == "failed" and events[-1].response.error.message


# --- a multi-turn tool session shaped like the Codex CLI's requests ---------------------------------
# As recorded from codex exec 0.169.0: no `instructions` (developer messages open the input instead),
# ids on the items it sends back, a namespace and a web_search tool beside the functions.

CODEX_TOOLS = [
    {"type": "function", "name": "shell", "description": "Runs a shell command and returns its output.",
     "strict": False, "parameters": {"type": "object", "properties": {
         "command": {"type": "array", "items": {"type": "string"}}, "workdir": {"type": "string"},
         "timeout_ms": {"type": "number"}}, "required": ["command"], "additionalProperties": False}},
    {"type": "function", "name": "update_plan", "description": "Updates the task plan.", "strict": False,
     "parameters": {"type": "object", "properties": {"plan": {"type": "array", "items": {"type": "object"}}},
                    "required": ["plan"], "additionalProperties": False}},
    {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.",
     "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object", "properties": {}}}]},
    {"type": "web_search", "external_web_access": False},
]


def _codex_turn(gateway, account, session: str, items: list) -> tuple[list[tuple[str, dict]], requests.Response]:
    """One turn as the Codex CLI sends it: the whole input again, streamed, nothing stored."""
    body = {"model": "kimi-k2.5", "input": items,
            "tools": CODEX_TOOLS, "tool_choice": "auto", "parallel_tool_calls": False,
            "reasoning": {"effort": "medium", "summary": "auto"}, "store": False, "stream": True,
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": session,
            "client_metadata": {"session_id": session, "x-codex-turn-metadata": "{}"},
            "text": {"verbosity": "medium"}}
    headers = {"Authorization": f"Bearer {account['api_key']}", "accept": "text/event-stream",
               "accept-encoding": "zstd, gzip", "originator": "codex_exec", "session-id": session,
               "x-client-request-id": session, "user-agent": "codex_exec/0.169.0 (Debian 12.0.0; x86_64)"}
    r = requests.post(f"{gateway.url}/v1/responses", json=body, headers=headers, stream=True, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert "zstd" not in r.headers.get("Content-Encoding", "") and "gzip" not in r.headers.get("Content-Encoding", "")
    raw = r.raw.read(decode_content=False).decode()  # the bytes as sent: no encoding to undo
    events = []
    for block in raw.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            name = lines[0].removeprefix("event: ")
            data = json.loads(lines[1].removeprefix("data: "))
            assert data["type"] == name
            events.append((name, data))
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    return events, r


def test_codex_cli_like_session(gateway, account):
    session = str(uuid.uuid4())
    items = [{"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text":
              "You are a coding agent running in the Codex CLI."}]},
             {"type": "message", "id": "msg_2", "role": "developer", "content": [{"type": "input_text", "text":
              "<permissions instructions>sandbox: workspace-write</permissions instructions>"}]},
             {"type": "message", "id": "msg_3", "role": "user", "content": [{"type": "input_text", "text":
              "<environment_context><cwd>/repo</cwd></environment_context>"}]},
             {"type": "message", "id": "msg_4", "role": "user", "content": [{"type": "input_text", "text":
              "Use shell to list the files, command=ls"}]}]
    before = balance(gateway, account)

    events, first = _codex_turn(gateway, account, session, items)
    names = [n for n, _ in events]
    assert names[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert names[-3:] == ["response.function_call_arguments.done", "response.output_item.done",
                          "response.completed"]
    call = events[-2][1]["item"]
    assert call["type"] == "function_call" and call["name"] == "shell" and call["status"] == "completed"
    assert json.loads(call["arguments"])["command"] == ["ls"]
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["store"] is False and done["usage"]["input_tokens"] > 0
    assert [t["name"] for t in done["tools"]] == ["shell", "update_plan"]

    # The next turn sends everything again, with the call and its output (and a reasoning item to skip).
    items += [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAB"},
              {"type": "function_call", "status": "completed", "id": call["id"], "name": call["name"],
               "arguments": call["arguments"], "call_id": call["call_id"]},
              {"type": "function_call_output", "id": "fco_1", "call_id": call["call_id"],
               "output": json.dumps({"output": "README.md\nkyma\n", "metadata": {"exit_code": 0}})}]
    events, second = _codex_turn(gateway, account, session, items)
    names = [n for n, _ in events]
    assert "response.output_text.delta" in names and names[-1] == "response.completed"
    text = events[-1][1]["response"]["output"][0]["content"][0]["text"]
    assert text.startswith("The shell tool returned:") and "README.md" in text
    assert [n for n in names if n.startswith("response.output_item")] == ["response.output_item.added",
                                                                        "response.output_item.done"]

    items += [events[-1][1]["response"]["output"][0], {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "say exactly: done"}]}]
    events, third = _codex_turn(gateway, account, session, items)
    assert events[-1][1]["response"]["output"][0]["content"][0]["text"] == "done"

    rows = [_log(gateway, r.headers["X-Request-Id"]) for r in (first, second, third)]
    assert all(row[:2] == ("responses", 200) and row[3] for row in rows)
    assert all(row[5] == "left out tools the gateway cannot run: namespace, web_search" for row in rows)
    billed = sum(row[4] for row in rows) / 1e6
    assert before - balance(gateway, account) == pytest.approx(billed, abs=1e-6)
    assert events[-1][1]["response"]["usage"]["cost"] == pytest.approx(rows[2][4] / 1e6, abs=1e-6)
    for request_id in (f"resp_{r.headers['X-Request-Id']}" for r in (first, second, third)):
        assert db_rows(gateway.env, "select count(*) from storedresponse where id={p}", request_id) == [(0,)]


def test_a_previous_response_id_that_is_no_string_is_a_400(gateway, account):
    r = requests.post(f"{gateway.url}/v1/responses", timeout=30,
                      headers={"Authorization": f"Bearer {account['api_key']}"},
                      json={"model": "kimi-k2.5", "input": "hi", "previous_response_id": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "previous_response_id"


def test_provider_steering_works_as_in_chat_completions(oai):
    raw = oai.responses.with_raw_response.create(model="kimi-k2.5", input="say exactly: steered",
                                                 extra_body={"provider": {"order": ["sim-beta"]}})
    assert raw.headers["X-Kyma-Provider"] == "sim-beta" and raw.parse().output_text == "steered"


def test_input_items_list_the_whole_conversation_in_pages(oai, gateway):
    one = oai.responses.create(model="kimi-k2.5", instructions="Be brief.", max_output_tokens=20,
                               input=[{"role": "developer", "content": "Answer plainly."},
                                      {"role": "user", "content": "say exactly: first"}])
    two = oai.responses.create(model="kimi-k2.5", previous_response_id=one.id, input="say exactly: second",
                               max_output_tokens=20)
    items = list(oai.responses.input_items.list(two.id, order="asc"))  # the SDK follows every page
    assert [(i.type, i.role) for i in items] == [("message", "developer"), ("message", "user"),
                                                 ("message", "assistant"), ("message", "user")]
    assert items[1].content[0].type == "input_text" and items[1].content[0].text == "say exactly: first"
    assert items[2].content[0].text == "first"  # the first response's output, as the model saw it
    newest = oai.responses.input_items.list(two.id, limit=1)
    assert [i.id for i in newest.data] == [items[-1].id] and newest.has_more
    after = oai.responses.input_items.list(two.id, limit=2, after=newest.data[0].id)
    assert [i.id for i in after.data] == [items[2].id, items[1].id]  # ids stay the same from call to call
    stranger = register(gateway.url, f"io-{two.id}@example.com")["api_key"]
    with pytest.raises(openai.NotFoundError):  # another account's response does not exist for it
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=stranger, max_retries=0).responses.input_items.list(two.id)
