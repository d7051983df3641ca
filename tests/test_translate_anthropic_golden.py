"""Golden fixtures for the Anthropic ⇄ OpenAI translation: load, translate, compare exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kyma.translate.anthropic import (AnthropicStreamTranslator, anthropic_to_openai_request,
                                      openai_to_anthropic_response)

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"


def _cases(kind: str) -> list[Path]:
    return sorted((FIXTURES / kind).glob("*.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def translate_stream(case: dict) -> bytes:
    """Run a recorded OpenAI chunk list through the translator, as the /v1/messages view will."""
    translator = AnthropicStreamTranslator(model=case["model"], input_tokens=case["input_tokens"],
                                           message_id=case["message_id"], stop_sequences=case["stop_sequences"])
    out: list[bytes] = []
    for chunk in case["chunks"]:
        out += translator.feed(chunk)
    out += translator.finish(**case["finish"])
    return b"".join(out)


def test_every_kind_has_fixtures():
    assert len(_cases("requests")) >= 10 and len(_cases("responses")) >= 10 and len(_cases("streams")) >= 10
    for path in _cases("streams"):
        assert path.with_suffix(".sse").exists(), path.name


@pytest.mark.parametrize("path", _cases("requests"), ids=lambda p: p.stem)
def test_request_anthropic_to_openai(path):
    case = _load(path)
    assert anthropic_to_openai_request(case["anthropic"], model=case["model"]) == case["openai"]


@pytest.mark.parametrize("path", _cases("responses"), ids=lambda p: p.stem)
def test_response_openai_to_anthropic(path):
    case = _load(path)
    got = openai_to_anthropic_response(case["openai"], model=case["model"], stop_sequences=case.get("stop_sequences"))
    assert got == case["anthropic"]


@pytest.mark.parametrize("path", _cases("streams"), ids=lambda p: p.stem)
def test_stream_openai_chunks_to_anthropic_sse(path):
    expected = path.with_suffix(".sse").read_text()
    assert translate_stream(_load(path)).decode() == expected


def _events(sse: str) -> list[tuple[str, dict]]:
    """(event name, data) pairs of an SSE text with one event and one data line per event."""
    events = []
    for raw in sse.split("\n\n"):
        if raw:
            name_line, data_line = raw.split("\n")
            events.append((name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    return events


@pytest.mark.parametrize("path", _cases("streams"), ids=lambda p: p.stem)
def test_stream_fixture_follows_the_anthropic_event_grammar(path):
    """Every golden stream obeys the rules the SDK accumulator relies on."""
    events = _events(path.with_suffix(".sse").read_text())
    names = [name for name, _ in events]
    assert all(name == data["type"] for name, data in events)
    assert names[0] == "message_start"
    if names[-1] == "error":
        return
    assert names[-2:] == ["message_delta", "message_stop"]
    next_index, open_index = 0, None
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = data["index"], next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None


@pytest.mark.parametrize("path", _cases("requests"), ids=lambda p: p.stem)
def test_translated_request_passes_the_chat_pipeline_validation(path):
    """What /v1/messages hands the pipeline is a valid chat request, with the same needs."""
    from kyma.chat.request import parse_chat_request

    case = _load(path)
    req = parse_chat_request(case["openai"])
    assert req.max_tokens == case["anthropic"]["max_tokens"]
    assert req.stream == bool(case["anthropic"].get("stream"))
    assert req.needs.tools == bool(case["openai"].get("tools")) and case["openai"].get("tool_choice") != "none" \
        or not req.needs.tools
    assert req.needs.vision == ("image_url" in json.dumps(case["openai"]))
