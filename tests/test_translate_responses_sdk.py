"""The translated Responses output parsed by the real `openai` SDK (in process, through an httpx mock transport)."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from pydantic import BaseModel

from kyma.errors import UpstreamError
from kyma.translate.responses import ResponsesStreamTranslator, chat_to_response
from tests.canned_http import answering
from tests.test_translate_responses_golden import translate_stream

FIXTURES = Path(__file__).parent / "fixtures" / "responses"


def _client(body: bytes, content_type: str) -> openai.OpenAI:
    """An SDK client whose every request is answered with this body (no socket, no network)."""
    return openai.OpenAI(api_key="ky-test", base_url="http://gateway.test/v1", max_retries=0,
                         http_client=answering(body, content_type))


def _case(kind: str, name: str) -> dict:
    return json.loads((FIXTURES / kind / f"{name}.json").read_text())


def _stream(sse: bytes, **kwargs):
    with _client(sse, "text/event-stream").responses.stream(model="m", input="x", **kwargs) as stream:
        kinds = [event.type for event in stream]
        return kinds, stream.get_final_response()


def test_sdk_stream_helper_accumulates_text_and_usage():
    kinds, final = _stream(translate_stream(_case("streams", "text")))
    assert final.output_text == "Hello" and final.status == "completed"
    assert kinds.count("response.output_text.delta") == 2 and kinds[-1] == "response.completed"
    assert final.usage.input_tokens == 30 and final.usage.model_extra["cost"] == 2.6e-05


def test_sdk_stream_helper_accumulates_parallel_function_calls():
    _kinds, final = _stream(translate_stream(_case("streams", "text_then_parallel_tools")))
    assert [o.type for o in final.output] == ["message", "function_call", "function_call"]
    assert [(o.call_id, json.loads(o.arguments)) for o in final.output[1:]] == [
        ("call_a", {"city": "Oslo"}), ("call_b", {"city": "Bergen"})]


def test_sdk_stream_helper_keeps_reasoning_apart_from_the_answer():
    kinds, final = _stream(translate_stream(_case("streams", "reasoning_then_text")))
    assert [o.type for o in final.output] == ["reasoning", "message"] and final.output_text == "4"
    assert final.output[0].content[0].text == "Add them." and "response.reasoning_text.delta" in kinds


def test_sdk_sees_an_incomplete_stream_and_a_failed_one():
    sse = translate_stream(_case("streams", "length_incomplete"))
    events = list(_client(sse, "text/event-stream").responses.create(model="m", input="x", stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    failed = list(_client(translate_stream(_case("streams", "midstream_error")), "text/event-stream")
                  .responses.create(model="m", input="x", stream=True))
    assert failed[-1].type == "response.failed" and failed[-1].response.error.message == "upstream died"
    with pytest.raises(RuntimeError):
        _stream(translate_stream(_case("streams", "midstream_error")))  # no response.completed


def test_a_failure_before_any_output_still_opens_the_response():
    translator = ResponsesStreamTranslator(_case("streams", "text")["base"])
    sse = b"".join(translator.error(UpstreamError("every route failed")))
    events = list(_client(sse, "text/event-stream").responses.create(model="m", input="x", stream=True))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "response.failed"]


def test_sdk_parses_a_translated_response_with_function_calls():
    case = _case("responses", "tool_calls")
    body = chat_to_response(case["chat"], case["base"])
    resp = _client(json.dumps(body).encode(), "application/json").responses.create(model="m", input="x")
    assert [o.type for o in resp.output] == ["function_call", "function_call"]
    assert resp.output[1].call_id == "call_r1_1"  # the upstream sent none
    assert resp.output_text == ""


class Weather(BaseModel):
    city: str
    temp: int


def test_sdk_parse_reads_the_structured_output():
    case = _case("responses", "text_completed")
    chat = {**case["chat"], "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": '{"city": "Oslo", "temp": 4}'}}]}
    body = chat_to_response(chat, case["base"])
    parsed = _client(json.dumps(body).encode(), "application/json").responses.parse(
        model="m", input="x", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Oslo", temp=4)
