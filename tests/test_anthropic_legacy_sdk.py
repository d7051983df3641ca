"""The last 0.x anthropic SDK (sends x-api-key, not Bearer) against the real gunicorn gateway.

anthropic 0.x cannot share .venv with 2.x, so `make setup` builds .venv-anthropic0 from
requirements-legacy-sdk.txt and tests/anthropic0_client.py runs there as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from tests.conftest import register
from tests.servers import ROOT

# The 0.x SDK's wire protocol; its calls reach storage as the messages tests' do on PostgreSQL too.
pytestmark = [pytest.mark.integration, pytest.mark.client_protocol]

LEGACY_PYTHON = ROOT / ".venv-anthropic0" / "bin" / "python"
SCRIPT = ROOT / "tests" / "anthropic0_client.py"


WEATHER = {"name": "get_weather", "description": "Weather for a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def _fresh_key(gateway) -> str:
    return register(gateway.url, f"legacy-{uuid.uuid4().hex[:12]}@example.com")["api_key"]


@pytest.fixture(scope="module")
def summary(gateway, tmp_path_factory):
    """Run the 0.x client script once against the gateway and return its JSON summary."""
    if not LEGACY_PYTHON.exists():
        pytest.skip(".venv-anthropic0 is missing: run `make setup` (it installs requirements-legacy-sdk.txt)")
    # Module scope (one run for every test below), so fresh accounts come from register(), as the
    # function-scoped `account` fixture does. The rate-limit loop gets its own account and window.
    args = {"base_url": gateway.url, "api_key": _fresh_key(gateway), "rate_key": _fresh_key(gateway),
            "bad_key": "ky-" + "0" * 40}
    tmp_path = tmp_path_factory.mktemp("anthropic0")
    # No ambient ANTHROPIC_* settings or profile: the SDK sees only what the script passes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run([str(LEGACY_PYTHON), str(SCRIPT)], input=json.dumps(args), capture_output=True,
                          text=True, timeout=180, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout), "_keys": args}


def test_it_is_really_the_last_0x_release(summary):
    assert summary["sdk_version"].startswith("0.")
    pinned = (ROOT / "requirements-legacy-sdk.txt").read_text()
    assert f"anthropic=={summary['sdk_version']}\n" in pinned


def test_sends_x_api_key_and_never_authorization(summary):
    sent = summary["requests"]
    assert len(sent) >= 8  # create, two streams, two tool turns, count_tokens, the error cases
    keys = summary["_keys"]
    assert {r["x_api_key"] for r in sent} == {keys["api_key"], keys["rate_key"], keys["bad_key"]}
    assert all(r["authorization"] is None for r in sent)
    assert {r["anthropic_version"] for r in sent} == {"2023-06-01"}
    assert all(r["user_agent"] == f"Anthropic/Python {summary['sdk_version']}" for r in sent)
    assert {r["path"] for r in sent} == {"/v1/messages", "/v1/messages/count_tokens"}


def test_create(summary):
    msg = summary["create"]
    assert msg["id"].startswith("msg_") and msg["types"] == ["text"]
    assert msg["text"] == "Hello from Kyma" and msg["stop_reason"] == "end_turn"
    assert msg["model"] == "kimi-k2.5"  # claude-sonnet-4-5 → kimi-k2.5 in kyma/data/claude_models.json
    assert msg["input_tokens"] > 0 and msg["output_tokens"] > 0


def test_stream_text_and_raw_events(summary):
    s = summary["stream"]
    assert s["text"] == " ".join(str(i) for i in range(1, 31))
    assert s["stop_reason"] == "end_turn" and s["output_tokens"] > 0
    kinds = s["raw_events"]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert {"content_block_start", "content_block_delta", "content_block_stop"} <= set(kinds)


def test_tool_use_round_trip_with_streamed_arguments(summary):
    tool = summary["tool"]
    assert tool["stop_reason"] == "tool_use"
    assert [(c["name"], c["input"]) for c in tool["calls"]] == [("get_weather", {"city": "Oslo"})]
    assert tool["input_json_deltas"] >= 1 and json.loads(tool["partial_json"]) == {"city": "Oslo"}
    assert tool["answer_stop_reason"] == "end_turn" and "4 degrees and rain" in tool["answer_text"]


def test_count_tokens(summary):
    from kyma.translate.anthropic import count_tokens_for

    body = {"model": "claude-sonnet-4-5", "tools": [WEATHER],
            "messages": [{"role": "user", "content": "What is the weather in Oslo?"}]}
    assert summary["count_tokens"]["input_tokens"] == count_tokens_for(body) > 0


def test_exception_classes(summary):
    auth = summary["auth_error"]
    assert (auth["class"], auth["status"], auth["error_type"]) == ("AuthenticationError", 401, "authentication_error")
    assert auth["body_type"] == "error"

    rate = summary["rate_limit"]
    assert (rate["class"], rate["status"], rate["error_type"]) == ("RateLimitError", 429, "rate_limit_error")
    assert 25 < rate["attempt"] <= 31  # tier 0: 25 per model, 30 per minute
    assert int(rate["retry_after"]) >= 1

    billing = summary["billing"]
    # 0.x has no class for 402: it must arrive as the plain APIStatusError.
    assert (billing["class"], billing["status"], billing["error_type"]) == ("APIStatusError", 402, "billing_error")

