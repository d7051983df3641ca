"""OpenAI chat completion → Anthropic Message, plus the stop-reason and usage mappings the stream shares."""

from __future__ import annotations

import json
import re
import uuid

from kyma.translate.fields import int_or_zero, text_of

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                 "function_call": "tool_use", "content_filter": "refusal"}
_TOOL_ID = re.compile(r"[^a-zA-Z0-9_-]")
# Kyma's own usage fields (cost, cache discount) ride along in the Anthropic usage; the SDK keeps unknown keys.
_KYMA_USAGE = ("cost", "cache_discount")


def openai_to_anthropic_response(resp: dict, *, model: str, stop_sequences: list[str] | None = None) -> dict:
    """The Anthropic Message for an OpenAI chat completion (first choice)."""
    choice = (resp.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict] = []
    reasoning = reasoning_text(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = text_of(message.get("content")) or message.get("refusal") or ""
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": tool_use_id(call.get("id")),
                        "name": function.get("name") or "", "input": tool_input(function.get("arguments"))})
    reason, matched = stop_reason(choice, stop_sequences)
    return {"id": message_id(resp.get("id")), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": reason, "stop_sequence": matched,
            "usage": anthropic_usage(resp.get("usage"))}


def stop_reason(choice: dict, stop_sequences: list[str] | None) -> tuple[str, str | None]:
    """(Anthropic stop_reason, matched stop sequence) for an OpenAI choice.

    OpenAI does not say which stop string matched; vLLM-style upstreams put it in the
    non-standard choice["stop_reason"], so a match is reported only when that names one we sent.
    """
    finish = choice.get("finish_reason")
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched in (stop_sequences or []):
        return "stop_sequence", matched
    return _STOP_REASONS.get(finish, "end_turn"), None


def anthropic_usage(usage: dict | None) -> dict:
    """Anthropic usage from OpenAI usage: input_tokens excludes cache reads and writes."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cache_read = int_or_zero(details.get("cached_tokens", usage.get("cached_tokens")))
    cache_write = int_or_zero(details.get("cache_write_tokens", usage.get("cache_write_tokens")))
    out = {"input_tokens": max(int_or_zero(usage.get("prompt_tokens")) - cache_read - cache_write, 0),
           "output_tokens": int_or_zero(usage.get("completion_tokens")),
           "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read}
    for key in _KYMA_USAGE:
        if usage.get(key) is not None:
            out[key] = usage[key]
    return out


def tool_input(arguments) -> dict:
    """Parsed tool arguments; empty, malformed or non-object JSON becomes {} instead of crashing."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def tool_use_id(call_id) -> str:
    """A tool_use id matching ^[a-zA-Z0-9_-]+$ (Anthropic's rule), generated when the upstream sent none."""
    cleaned = _TOOL_ID.sub("_", call_id) if isinstance(call_id, str) else ""
    return cleaned or f"toolu_{uuid.uuid4().hex[:24]}"


def message_id(completion_id) -> str:
    """msg_<the upstream id's tail>, so logs of both protocols line up; random when absent."""
    if isinstance(completion_id, str) and completion_id:
        tail = _TOOL_ID.sub("", completion_id.removeprefix("chatcmpl-"))
        if tail:
            return f"msg_{tail}"
    return f"msg_{uuid.uuid4().hex[:24]}"


def reasoning_text(message: dict) -> str:
    """The non-standard reasoning field (reasoning_content, or reasoning on some hosts)."""
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) else ""
