"""The translated output parsed by the real `anthropic` SDK (in process, through an httpx mock transport)."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import pytest

from kyma.errors import UpstreamError
from kyma.translate.anthropic import AnthropicStreamTranslator, openai_to_anthropic_response
from tests.canned_http import answering
from tests.test_translate_anthropic_golden import translate_stream

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"


def _client(body: bytes, content_type: str) -> anthropic.Anthropic:
    """An SDK client whose every request is answered with this body (no socket, no network)."""
    return anthropic.Anthropic(api_key="ky-test", base_url="http://gateway.test", max_retries=0,
                               http_client=answering(body, content_type))


def _stream_message(sse: bytes):
    client = _client(sse, "text/event-stream")
    with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]) as stream:
        texts = list(stream.text_stream)
        return texts, stream.get_final_message()


def _case(name: str) -> dict:
    return json.loads((FIXTURES / "streams" / f"{name}.json").read_text())


def test_sdk_accumulates_text_then_streamed_tool_input():
    texts, message = _stream_message(translate_stream(_case("text_then_tool")))
    assert texts == ["Checking."]
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[1].input == {"city": "Oslo"} and message.content[1].name == "get_weather"
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 25 and message.usage.output_tokens == 9


@pytest.mark.parametrize("name", ["parallel_tools", "parallel_tools_starts_first", "tool_in_one_chunk_and_no_args"])
def test_sdk_accumulates_parallel_tool_calls(name):
    _texts, message = _stream_message(translate_stream(_case(name)))
    inputs = [(b.id, b.input) for b in message.content]
    first = ("call_a", {"city": "Oslo"})
    assert inputs[0] == first and len(inputs) == 2
    assert inputs[1] in (("call_b", {"tz": "UTC"}), ("call_b", {}))


def test_sdk_reads_thinking_stop_sequence_and_cache_usage():
    _texts, thinking = _stream_message(translate_stream(_case("thinking_then_text")))
    assert [b.type for b in thinking.content] == ["thinking", "text"]
    assert thinking.content[0].thinking == "Add them."
    _texts, stopped = _stream_message(translate_stream(_case("stop_sequence")))
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "END")
    _texts, cached = _stream_message(translate_stream(_case("length_with_cache_usage_override")))
    assert cached.stop_reason == "max_tokens"
    assert (cached.usage.input_tokens, cached.usage.cache_read_input_tokens) == (952, 2048)


def test_sdk_raw_events_keep_their_order():
    client = _client(translate_stream(_case("text")), "text/event-stream")
    events = client.messages.create(model="m", max_tokens=10, stream=True,
                                    messages=[{"role": "user", "content": "x"}])
    kinds = [e.type for e in events]
    assert kinds == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]


def test_sdk_raises_on_midstream_error_event():
    with pytest.raises(anthropic.APIStatusError) as info:
        _stream_message(translate_stream(_case("midstream_error")))
    assert info.value.body["error"]["message"] == "upstream died"


def test_error_event_from_a_gateway_error_ends_the_stream():
    translator = AnthropicStreamTranslator(model="m", input_tokens=3, message_id="msg_1")
    sent = translator.start() + translator.feed({"choices": [{"index": 0, "delta": {"content": "a"}}]})
    sent.append(translator.error(UpstreamError("every route failed")))
    assert translator.feed({"choices": [{"index": 0, "delta": {"content": "b"}}]}) == []
    assert translator.finish() == []
    assert sent[-1].startswith(b"event: error\n")
    with pytest.raises(anthropic.APIStatusError):
        _stream_message(b"".join(sent))


def test_sdk_parses_translated_non_streaming_response_with_cost():
    case = json.loads((FIXTURES / "responses" / "usage_cache_and_cost.json").read_text())
    body = openai_to_anthropic_response(case["openai"], model=case["model"])
    message = _client(json.dumps(body).encode(), "application/json").messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert message.id == "msg_abc123" and message.content[0].text == "Cached hello."
    assert message.usage.cache_creation_input_tokens == 512
    assert message.usage.model_extra["cost"] == 0.000956


def test_sdk_parses_translated_tool_use_response():
    case = json.loads((FIXTURES / "responses" / "parallel_tools_malformed.json").read_text())
    body = openai_to_anthropic_response(case["openai"], model=case["model"])
    message = _client(json.dumps(body).encode(), "application/json").messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert [b.id for b in message.content] == ["call_a", "call_b_2", "call_c"]
    assert message.stop_reason == "tool_use"
