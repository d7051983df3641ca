"""Validation, token counting and claude-* model mapping of the Anthropic request translation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kyma import tokens
from kyma.errors import InvalidRequest
from kyma.services.catalog import Catalog
from kyma.translate.anthropic import anthropic_to_openai_request, count_tokens_for, map_claude_model

DATA = Path(__file__).resolve().parent.parent / "kyma" / "data"
TOOL = {"name": "f", "input_schema": {"type": "object"}}


def _body(**fields) -> dict:
    return {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **fields}


def _user(*blocks) -> dict:
    return {"role": "user", "content": list(blocks)}


INVALID = [
    ({"max_tokens": None}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages"),  # a system prompt, but no conversation
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ({"messages": [_user({"type": "text", "text": "a"}), {"role": "system", "content": 5}]}, "messages.1.content"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"messages": [_user({"type": "text", "text": "a"}, {"type": "video"})]}, "messages.0.content.1.type"),
    ({"messages": [_user({"text": "no type"})]}, "messages.0.content.0"),
    ({"messages": [_user({"type": "tool_use", "id": "t", "name": "f", "input": {}})]}, "messages.0.content.0.type"),
    ({"messages": [_user({"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}})]},
     "messages.0.content.0.source.media_type"),
    ({"messages": [_user({"type": "image", "source": {"type": "file", "file_id": "f1"}})]},
     "messages.0.content.0.source.type"),
    ({"messages": [_user({"type": "tool_result", "tool_use_id": "nope", "content": "x"})]},
     "messages.0.content.0.tool_use_id"),
    ({"messages": [{"role": "user", "content": "q"},
                   {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                   {"role": "user", "content": "no result"}]}, "messages.2"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": []}]}]},
     "messages.0.content.0.input"),
    ({"system": [{"type": "image"}]}, "system.0.type"),
    ({"system": 3}, "system"),
    ({"temperature": 1.5}, "temperature"),
    ({"top_p": "high"}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"stop_sequences": "END"}, "stop_sequences"),
    ({"stop_sequences": [f"s{i}" for i in range(17)]}, "stop_sequences"),
    ({"metadata": {"user_id": 7}}, "metadata.user_id"),
    ({"stream": "yes"}, "stream"),
    ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
    ({"tools": [TOOL], "tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
    ({"tools": [TOOL], "tool_choice": {"type": "tool", "name": "g"}}, "tool_choice.name"),
    ({"tool_choice": {"type": "any"}}, "tool_choice"),
    ({"thinking": "on"}, "thinking"),
]


@pytest.mark.parametrize("fields,param", INVALID, ids=[p for _, p in INVALID])
def test_invalid_requests_name_the_offending_field(fields, param):
    with pytest.raises(InvalidRequest) as info:
        anthropic_to_openai_request(_body(**fields), model="m")
    assert info.value.param == param and info.value.status == 400 and info.value.message


def test_lenient_inputs_are_accepted():
    body = _body(thinking={"type": "adaptive"}, tool_choice={"type": "auto"}, stop_sequences=[],
                 messages=[_user({"type": "text", "text": ""}, {"type": "text", "text": "hi", "citations": None})])
    out = anthropic_to_openai_request(body, model="m")
    assert out["messages"] == [{"role": "user", "content": "hi"}]
    assert "tool_choice" not in out and "stop" not in out


def test_count_tokens_agrees_with_the_pipeline_estimate():
    body = {"model": "claude-sonnet-4-5", "system": [{"type": "text", "text": "You are terse."}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "What is the weather in Oslo today?"}]}
    translated = anthropic_to_openai_request({**body, "max_tokens": 100}, model="kimi-k2.5")
    expected = tokens.count_messages(translated["messages"], translated["tools"])
    assert count_tokens_for(body) == expected
    assert count_tokens_for(body) > count_tokens_for({**body, "tools": None})


def test_count_tokens_validates_but_does_not_need_max_tokens():
    assert count_tokens_for({"model": "m", "messages": [{"role": "user", "content": "hi"}]}) > 0
    with pytest.raises(InvalidRequest):
        count_tokens_for({"model": "m", "messages": []})


@pytest.fixture(scope="module")
def catalog():
    return Catalog.load(DATA / "catalog.json")


MAPPING = {"default": "kimi-k2.5", "claude-sonnet-4-5": "kimi-k2.5", "claude-opus-4": "qwen-3.6-plus",
           "claude-opus": "glm-5.1", "claude-haiku-4-5": "glm-4.7-flash"}


@pytest.mark.parametrize("name,expected", [
    ("qwen-3-coder", "qwen-3-coder"),                      # catalog id passes through
    ("best", "best"),                                      # alias passes through (the pipeline resolves it)
    ("claude-sonnet-4-5", "kimi-k2.5"),                    # exact
    ("claude-haiku-4-5-20251001", "glm-4.7-flash"),        # dated snapshot
    ("claude-sonnet-4-5[1m]", "kimi-k2.5"),                # Claude Code's 1M-context suffix
    ("Claude-Haiku-4-5-latest", "glm-4.7-flash"),          # case and -latest
    ("claude-opus-4-7", "qwen-3.6-plus"),                  # longest configured prefix
    ("claude-opus-5", "glm-5.1"),                          # shorter prefix
    ("claude-unknown-9", "kimi-k2.5"),                     # mapping default
    ("gpt-4o", "gpt-4o"),                                  # unknown non-claude: the pipeline 404s it
])
def test_map_claude_model(catalog, name, expected):
    assert map_claude_model(name, MAPPING, catalog) == expected


def test_map_claude_model_falls_back_to_catalog_default(catalog):
    assert map_claude_model("claude-x", {}, catalog) == catalog.default_model


def test_shipped_claude_map_points_at_catalog_models(catalog):
    mapping = json.loads((DATA / "claude_models.json").read_text())
    for name in ("claude-sonnet-4-5-20250929", "claude-haiku-4-5", "claude-opus-4-1", "claude-3-5-haiku-20241022"):
        assert catalog.get(map_claude_model(name, mapping, catalog)) is not None


def test_system_messages_inside_the_conversation_join_the_neighbouring_user_turn():
    # What Claude Code sends with the mid-conversation-system beta: here the last message is a system one.
    body = {"model": "claude-opus-4-8", "max_tokens": 64, "system": "You are Claude Code.",
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"},
            "context_management": {"edits": []},
            "messages": [{"role": "system", "content": "Opening rules."},
                         {"role": "user", "content": "fix the bug"},
                         {"role": "assistant", "content": "Looking."},
                         {"role": "system", "content": [{"type": "text", "text": "A reminder."}]},
                         {"role": "user", "content": "go on"},
                         {"role": "system", "content": "Be brief."}]}
    out = anthropic_to_openai_request(body, model="qwen-3.6-plus")
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "user"]
    assert out["messages"][0]["content"] == "You are Claude Code.\n\nOpening rules."
    assert out["messages"][3]["content"] == "<system>\nA reminder.\n</system>\n\ngo on\n\n<system>\nBe brief.\n</system>"
    assert count_tokens_for(body) > 0


def test_current_claude_names_map_by_family():
    from kyma.config import DATA
    from kyma.services.catalog import Catalog, load_claude_models
    from kyma.translate.anthropic import map_claude_model

    catalog, mapping = Catalog.load(DATA / "catalog.json"), load_claude_models(DATA / "claude_models.json")
    assert map_claude_model("claude-opus-4-8", mapping, catalog) == mapping["claude-opus"]
    assert map_claude_model("claude-sonnet-5-20261201", mapping, catalog) == mapping["claude-sonnet"]
    assert map_claude_model("claude-5-haiku", mapping, catalog) == mapping["claude-haiku"]


def test_agents_get_more_stop_strings_than_openais_four():
    # Continue sends six; the open-model servers behind the providers take them.
    out = anthropic_to_openai_request(_body(stop_sequences=[f"s{i}" for i in range(16)]), model="m")
    assert len(out["stop"]) == 16


def test_anthropic_model_pages_and_names():
    from kyma.translate.anthropic_models import anthropic_page, display_name

    items = [{"id": f"claude-{i}"} for i in range(5)]
    first = anthropic_page(items, limit=2, after_id=None, before_id=None)
    assert [m["id"] for m in first["data"]] == ["claude-0", "claude-1"] and first["has_more"]
    assert (first["first_id"], first["last_id"]) == ("claude-0", "claude-1")
    last = anthropic_page(items, limit=2, after_id="claude-2", before_id=None)
    assert [m["id"] for m in last["data"]] == ["claude-3", "claude-4"] and not last["has_more"]
    back = anthropic_page(items, limit=2, after_id=None, before_id="claude-4")
    assert [m["id"] for m in back["data"]] == ["claude-2", "claude-3"] and back["has_more"]
    assert anthropic_page(items, limit=2, after_id="nope", before_id=None)["data"] == []
    assert display_name("claude-sonnet-4-5") == "Claude Sonnet 4.5"
    assert display_name("claude-3-5-haiku") == "Claude Haiku 3.5"
