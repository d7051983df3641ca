"""/v1/messages on the real server (gunicorn, gevent workers, simulated providers) with the anthropic SDK."""

from __future__ import annotations

import anthropic
import pytest
import requests

from kyma.translate.anthropic import count_tokens_for

pytestmark = pytest.mark.integration

WEATHER = {"name": "get_weather", "description": "Weather for a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SYSTEM = [{"type": "text", "text": "You are a coding agent."},
          {"type": "text", "text": "Follow the rules.", "cache_control": {"type": "ephemeral"}}]


@pytest.fixture()
def claude(gateway, account):
    """The anthropic SDK (current major: sends Authorization: Bearer) against the gateway root."""
    return anthropic.Anthropic(base_url=gateway.url, api_key=account["api_key"], max_retries=0, timeout=30)


def test_create_maps_claude_name_and_translates_back(claude):
    msg = claude.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=64, system=SYSTEM,
                                 messages=[{"role": "user", "content": "say exactly: Hello from Kyma"}])
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == "Hello from Kyma"
    assert msg.model == "kimi-k2.5"  # claude-sonnet-4-5 → kimi-k2.5 in kyma/data/claude_models.json
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg.usage.model_extra["cost"] > 0


def test_stream_text_and_raw_events(claude):
    with claude.messages.stream(model="kimi-k2.5", max_tokens=200,
                                messages=[{"role": "user", "content": "count to 30"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == " ".join(str(i) for i in range(1, 31))
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    events = claude.messages.create(model="kimi-k2.5", max_tokens=50, stream=True,
                                    messages=[{"role": "user", "content": "say exactly: hi there"}])
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_delta" in kinds


def test_streamed_tool_use_round_trip(claude):
    ask = [{"role": "user", "content": "Use get_weather for city=Oslo"}]
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=200, tools=[WEATHER], messages=ask) as stream:
        final = stream.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use" and len(calls) == 1
    assert calls[0].name == "get_weather" and calls[0].input == {"city": "Oslo"}
    follow = ask + [{"role": "assistant", "content": [b.model_dump() for b in final.content]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id,
                                                  "content": "4 degrees and rain"}]}]
    answer = claude.messages.create(model="claude-haiku-4-5", max_tokens=200, tools=[WEATHER], messages=follow)
    assert answer.stop_reason == "end_turn"
    assert "4 degrees and rain" in answer.content[0].text


def test_count_tokens_matches_the_translation(claude):
    body = {"model": "claude-sonnet-4-5", "system": SYSTEM, "tools": [WEATHER],
            "messages": [{"role": "user", "content": "What is the weather in Oslo?"}]}
    counted = claude.messages.count_tokens(**body)
    assert counted.input_tokens == count_tokens_for(body) > 0


def test_x_api_key_and_errors_in_anthropic_shape(gateway, account, claude):
    url = f"{gateway.url}/v1/messages"
    body = {"model": "kimi-k2.5", "max_tokens": 20, "messages": [{"role": "user", "content": "say exactly: ok"}]}
    old_style = requests.post(url, json=body, timeout=30,
                              headers={"x-api-key": account["api_key"], "anthropic-version": "2023-06-01"})
    assert old_style.status_code == 200 and old_style.json()["content"][0]["text"] == "ok"
    with pytest.raises(anthropic.AuthenticationError) as info:
        anthropic.Anthropic(base_url=gateway.url, api_key="ky-wrong", max_retries=0).messages.create(**body)
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(model="kimi-k2.5", max_tokens=20, messages=[
            {"role": "user", "content": [{"type": "video", "source": {}}]}])
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "video" in info.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.create(**{**body, "model": "gpt-4o"})
    assert info.value.body["error"]["type"] == "not_found_error"


def test_failure_after_first_byte_ends_with_error_event(gateway, account):
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key=account["api_key"], max_retries=0, timeout=30,
                              default_headers={"X-Kyma-Sim-Fault": "cut:6"})
    with pytest.raises(anthropic.APIStatusError) as info:
        with sdk.messages.stream(model="kimi-k2.5", max_tokens=300,
                                 messages=[{"role": "user", "content": "count to 200"}]) as stream:
            for _ in stream.text_stream:
                pass
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "api_error"


def _faulty(gateway, account, fault: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=account["api_key"], max_retries=0, timeout=30,
                               default_headers={"X-Kyma-Sim-Fault": fault})


@pytest.mark.parametrize("stream", [False, True])
def test_every_upstream_rate_limited_is_a_real_429(gateway, account, stream):
    sdk = _faulty(gateway, account, "429:0")  # no Retry-After: the answer still tells the client to wait
    with pytest.raises(anthropic.RateLimitError) as info:
        sdk.messages.create(model="kimi-k2.5", max_tokens=20, stream=stream,
                            messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_every_upstream_overloaded_is_529(gateway, account):
    with pytest.raises(anthropic.OverloadedError) as info:
        _faulty(gateway, account, "503").messages.create(model="kimi-k2.5", max_tokens=20,
                                                         messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 529 and info.value.body["error"]["type"] == "overloaded_error"


def test_insufficient_credits_is_402(claude):
    # glm-5.1 at its full 65,536 output tokens plus a ~100k-token prompt costs more than the $0.50 signup credit.
    with pytest.raises(anthropic.APIStatusError) as info:
        claude.messages.create(model="glm-5.1", max_tokens=65536,
                               messages=[{"role": "user", "content": "word " * 100_000}])
    assert info.value.status_code == 402
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "billing_error"


def _agent_turn(sdk, system, tools, messages):
    """One streamed turn the way Claude Code runs it: raw events in, the accumulated message out."""
    with sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=1024, system=system, tools=tools,
                             messages=messages) as stream:
        start_usage = None
        for event in stream:
            if event.type == "message_start":
                start_usage = event.message.usage
        return start_usage, stream.get_final_message()


def test_claude_code_like_session(claude):
    import uuid

    # A long system prompt, unique to this run, so the simulator's prompt cache starts cold.
    system = [{"type": "text", "text": f"Session {uuid.uuid4().hex}. " + "Rules of the repository. " * 400,
               "cache_control": {"type": "ephemeral"}}]
    tools = [{"name": "Read", "description": "Read a file.", "input_schema": {
                 "type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}},
             {"name": "Bash", "description": "Run a command.", "input_schema": {
                 "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}]
    messages = [{"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                                             {"type": "text", "text": "Use Read with file_path=README.md"}]}]
    start, first = _agent_turn(claude, system, tools, messages)
    assert start.input_tokens > 1000  # the real prompt estimate, not 0 (Claude Code tracks context from it)
    call = next(b for b in first.content if b.type == "tool_use")
    assert (call.name, call.input) == ("Read", {"file_path": "README.md"})

    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                               "content": [{"type": "text", "text": "# Kyma gateway"}]}]}]
    _start, second = _agent_turn(claude, system, tools, messages)
    assert second.stop_reason == "end_turn" and "# Kyma gateway" in second.content[0].text
    assert second.usage.cache_read_input_tokens > 0  # the repeated prefix was served from cache

    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in second.content]},
                 {"role": "user", "content": "say exactly: done"}]
    _start, third = _agent_turn(claude, system, tools, messages)
    assert third.content[0].text == "done"
    total = third.usage.input_tokens + third.usage.cache_read_input_tokens
    assert total > 1000 and third.usage.cache_read_input_tokens > 0


def test_a_claude_code_request_with_a_system_message_last_is_answered(claude, simulators):
    """Shaped like the real Claude Code's first request for a model it does not know as an older one:
    the mid-conversation-system beta puts a system message inside `messages` (here the last one)."""
    import requests as http

    base, _ = simulators
    msg = claude.messages.create(
        model="claude-opus-4-8", max_tokens=64, system=SYSTEM,
        thinking={"type": "adaptive"}, extra_body={"output_config": {"effort": "medium"},
                                                   "context_management": {"edits": []}},
        extra_headers={"anthropic-beta": "mid-conversation-system,context-management-2025-06-27"},
        messages=[{"role": "user", "content": "say exactly: ready"},
                  {"role": "system", "content": "Keep answers short."}])
    assert msg.content[0].text.startswith("ready")
    sent = http.get(f"http://127.0.0.1:{base}/sim/stats", timeout=5).json()["last_request"]["body"]["messages"]
    assert sent[-1]["role"] == "user" and "<system>\nKeep answers short.\n</system>" in sent[-1]["content"]


def test_a_claude_name_is_reported_as_the_alias_it_is(gateway, account, claude):
    from tests.servers import db_rows

    raw = claude.messages.with_raw_response.create(model="claude-opus-4-8", max_tokens=16,
                                                   messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["X-Kyma-Alias"] == "claude-opus-4-8" and raw.headers["X-Kyma-Model"] == raw.parse().model
    row = db_rows(gateway.env, "SELECT model_requested, alias FROM requestlog WHERE request_id = {p}",
                  raw.headers["X-Request-Id"])
    assert row == [("claude-opus-4-8", "claude-opus-4-8")]


def test_the_anthropic_sdk_lists_and_retrieves_the_claude_names_it_may_use(claude, gateway):
    page = claude.models.list(limit=5)
    assert [m.type for m in page.data] == ["model"] * 5 and page.has_more
    first = page.data[0]
    assert first.id.startswith("claude-") and first.display_name.startswith("Claude ")
    assert first.created_at.year >= 2024  # parsed as a datetime by the SDK: a typed field, not None
    everything = [m.id for m in claude.models.list(limit=1000).data]
    assert "claude-sonnet-4-5" in everything and "claude-opus" in everything
    after = claude.models.list(limit=3, after_id=page.data[1].id)
    assert after.data[0].id == page.data[2].id
    one = claude.models.retrieve("claude-sonnet-4-5")
    assert one.id == "claude-sonnet-4-5" and one.model_extra["kyma"]["maps_to"] == "kimi-k2.5"
    with pytest.raises(anthropic.NotFoundError):
        claude.models.retrieve("qwen-3-32b")  # not a name an Anthropic client picks
    # Without anthropic-version (the openai SDK, curl), the same name is the model it maps to.
    body = requests.get(f"{gateway.url}/v1/models/claude-sonnet-4-5", timeout=10).json()
    assert body["id"] == "kimi-k2.5" and body["alias"] == "claude-sonnet-4-5"


PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_a_pasted_screenshot_under_an_opus_name_runs_on_a_vision_model(claude, gateway):
    """Claude Code pastes screenshots: a claude-* name must not refuse them because its mapped model is text-only."""
    raw = claude.messages.with_raw_response.create(
        model="claude-opus-4-8", max_tokens=32,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
            {"type": "text", "text": "What is in this screenshot?"}]}])
    served = requests.get(f"{gateway.url}/v1/models/{raw.parse().model}", timeout=5).json()
    assert served["supports_vision"] and raw.headers["X-Kyma-Alias"] == "claude-opus-4-8"
    text_only = claude.messages.create(model="claude-opus-4-8", max_tokens=8,
                                       messages=[{"role": "user", "content": "hi"}])
    assert text_only.model == "qwen-3.6-plus"  # without images the configured mapping stands


def test_a_pdf_document_reaches_the_model_as_its_text(claude, simulators):
    import base64

    from tests.pdfs import pdf_with_pages

    base, _ = simulators
    pdf = base64.b64encode(pdf_with_pages("Quarterly report", "Revenue grew 12 percent")).decode()
    msg = claude.messages.create(model="claude-opus-4-8", max_tokens=32, messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
         "title": "q3.pdf"},
        {"type": "text", "text": "Summarise it."}]}])
    assert msg.content[0].text
    sent = requests.get(f"http://127.0.0.1:{base}/sim/stats", timeout=5).json()["last_request"]["body"]["messages"]
    assert sent[-1]["content"] == "q3.pdf\n\n[page 1]\nQuarterly report\n\n[page 2]\nRevenue grew 12 percent\n\nSummarise it."
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model="claude-opus-4-8", max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "url", "url": "http://127.0.0.1/secret.pdf"}}]}])
    assert err.value.body["error"]["type"] == "invalid_request_error" and "base64" in err.value.body["error"]["message"]


def test_claude_codes_large_max_tokens_is_held_and_sent_as_the_models_limit(claude, simulators, gateway):
    """Claude Code asks for up to 128k output tokens; the open model writes at most its own limit, so a
    new account's sign-up credit must cover the hold, and the upstream must not be asked for more."""
    base, _ = simulators
    limit = requests.get(f"{gateway.url}/v1/models/qwen-3.6-plus", timeout=5).json()["max_output_tokens"]
    assert limit < 128_000
    msg = claude.messages.create(model="claude-opus-4-8", max_tokens=128_000, system="word " * 14_000,
                                 messages=[{"role": "user", "content": "say exactly: fits"}])
    assert msg.content[0].text == "fits" and msg.model == "qwen-3.6-plus"
    sent = requests.get(f"http://127.0.0.1:{base}/sim/stats", timeout=5).json()["last_request"]["body"]
    assert sent["max_tokens"] == limit
