"""Golden fixtures for the Responses ⇄ chat translation: load, translate, compare exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kyma.errors import InvalidRequest
from kyma.translate.responses import ResponsesStreamTranslator, chat_to_response, responses_to_chat_request

FIXTURES = Path(__file__).parent / "fixtures" / "responses"


def _cases(kind: str) -> list[Path]:
    return sorted((FIXTURES / kind).glob("*.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def translate_stream(case: dict) -> bytes:
    """Run a recorded chat chunk list through the translator, as the /v1/responses view does."""
    translator = ResponsesStreamTranslator(case["base"])
    out: list[bytes] = []
    for chunk in case["chunks"]:
        out += translator.feed(chunk)
    if case["finish"] is not None:
        out += translator.finish(**case["finish"], now=1700000001)
    return b"".join(out)


def events(sse: str) -> list[tuple[str, dict]]:
    """(event name, data) pairs of an SSE text with one event and one data line per event."""
    out = []
    for raw in sse.split("\n\n"):
        if raw:
            name_line, data_line = raw.split("\n")
            out.append((name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    return out


def test_every_kind_has_fixtures():
    assert len(_cases("requests")) >= 8 and len(_cases("responses")) >= 5 and len(_cases("streams")) >= 6
    for path in _cases("streams"):
        assert path.with_suffix(".sse").exists(), path.name


@pytest.mark.parametrize("path", _cases("requests"), ids=lambda p: p.stem)
def test_request_responses_to_chat(path):
    case = _load(path)
    got = responses_to_chat_request(case["responses"], history=case["history"])
    assert (got.chat, got.echo, list(got.dropped), got.store) == (case["chat"], case["echo"], case["dropped"],
                                                                  case["store"])


@pytest.mark.parametrize("path", _cases("requests"), ids=lambda p: p.stem)
def test_translated_request_passes_the_chat_pipeline_validation(path):
    """What /v1/responses hands the pipeline is a valid chat request, with the needs it implies."""
    from kyma.chat.request import parse_chat_request

    case = _load(path)
    req = parse_chat_request(case["chat"])
    assert req.stream == bool(case["responses"].get("stream"))
    assert req.max_tokens == case["responses"].get("max_output_tokens")
    assert req.needs.vision == ("input_image" in json.dumps(case["responses"]))
    assert req.needs.tools == bool(case["chat"].get("tools"))


@pytest.mark.parametrize("path", _cases("responses"), ids=lambda p: p.stem)
def test_response_chat_to_responses(path):
    case = _load(path)
    assert chat_to_response(case["chat"], case["base"], now=1700000001) == case["response"]


@pytest.mark.parametrize("path", _cases("streams"), ids=lambda p: p.stem)
def test_stream_chat_chunks_to_responses_sse(path):
    assert translate_stream(_load(path)).decode() == path.with_suffix(".sse").read_text()


@pytest.mark.parametrize("path", _cases("streams"), ids=lambda p: p.stem)
def test_stream_fixture_follows_the_responses_event_grammar(path):
    """Every golden stream obeys the rules the SDK's accumulator relies on."""
    evs = events(path.with_suffix(".sse").read_text())
    names = [name for name, _ in evs]
    assert all(name == data["type"] for name, data in evs)
    assert [data["sequence_number"] for _, data in evs] == list(range(len(evs)))
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[-1] in ("response.completed", "response.incomplete", "response.failed")
    final = evs[-1][1]["response"]
    opened: dict[int, dict] = {}
    for name, data in evs:
        if name == "response.output_item.added":
            assert data["output_index"] == len(opened)
            opened[data["output_index"]] = {"item": data["item"], "done": False}
        elif name.startswith(("response.output_text.", "response.content_part.", "response.function_call_arg",
                              "response.reasoning_text.")):
            entry = opened[data["output_index"]]
            assert not entry["done"] and data["item_id"] == entry["item"]["id"]
        elif name == "response.output_item.done":
            entry = opened[data["output_index"]]
            assert not entry["done"] and data["item"]["id"] == entry["item"]["id"]
            entry["done"] = True
            assert final["output"][data["output_index"]] == data["item"]
    if names[-1] != "response.failed":
        assert all(entry["done"] for entry in opened.values())
        assert len(final["output"]) == len(opened) and final["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("body,param", [
    ({"model": "m"}, "input"),
    ({"model": "m", "input": []}, "input"),
    ({"input": "hi"}, "model"),
    ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
     "input[0].call_id"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[0].type"),
    ({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}, "tools"),
    ({"model": "m", "input": "hi", "tool_choice": "required"}, "tool_choice"),
    ({"model": "m", "input": "hi", "text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"model": "m", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "input": "hi", "store": "yes"}, "store"),
    ({"model": "m", "input": "hi", "conversation": "conv_1"}, "conversation"),
    ({"model": "m", "input": "hi", "metadata": {"k": 1}}, "metadata"),
])
def test_invalid_requests_name_the_param(body, param):
    with pytest.raises(InvalidRequest) as info:
        responses_to_chat_request(body)
    assert info.value.param == param and info.value.status == 400


def test_a_request_with_only_hosted_tools_names_the_tool():
    with pytest.raises(InvalidRequest) as info:
        responses_to_chat_request({"model": "m", "input": "hi", "tools": [{"type": "web_search_preview"}]})
    assert "web_search_preview" in info.value.message


def test_a_function_call_without_arguments_is_sent_as_an_empty_object():
    chat = responses_to_chat_request({"model": "m", "input": [
        {"type": "function_call", "call_id": "c", "name": "now"},
        {"type": "function_call_output", "call_id": "c", "output": "12:00"}]}).chat
    assert chat["messages"][0]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_errors_name_the_new_input_item_after_a_stored_conversation():
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with pytest.raises(InvalidRequest) as info:
        responses_to_chat_request({"model": "m", "input": [{"role": "robot", "content": "x"}]}, history=history)
    assert info.value.param == "input[0].role"
