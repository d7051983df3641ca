"""OpenAI chat completion → Responses API response object, plus the pieces the stream shares."""

from __future__ import annotations

import re
import time

from kyma.translate.fields import int_or_zero, text_of

# Kyma's own usage fields ride along in the Responses usage; the SDK keeps unknown keys.
_KYMA_USAGE = ("cost", "cache_discount", "estimated")
# finish_reason → the reason an incomplete response gives.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def new_response(echo: dict, *, response_id: str, model: str, created_at: int) -> dict:
    """A response object before any output: status in_progress, no usage yet."""
    return {"id": response_id, "object": "response", "created_at": created_at, "status": "in_progress",
            "background": False, "error": None, "incomplete_details": None, "model": model, "output": [],
            "usage": None, **echo}


def chat_to_response(chat: dict, base: dict, *, now: int | None = None) -> dict:
    """The finished response object for a chat completion (first choice), built on `base`."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    _status, incomplete = status_of(choice.get("finish_reason"))
    output: list[dict] = []
    thought = reasoning_text(message)
    if thought:
        output.append(reasoning_item(item_id(base["id"], "rs"), thought, "completed"))
    text = text_of(message.get("content")) or message.get("refusal") or ""
    if text:
        output.append(message_item(item_id(base["id"], "msg"), text, "completed"))
    for n, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        fc = item_id(base["id"], "fc", n)
        output.append(function_call_item(fc, call_id(call.get("id"), fc), function.get("name") or "",
                                         function.get("arguments") or "", "completed"))
    if incomplete and output:
        output[-1]["status"] = "incomplete"  # a cut-short answer: its last item is the one cut
    return finished(base, output, chat.get("usage"), choice.get("finish_reason"), now=now)


def finished(base: dict, output: list[dict], usage: dict | None, finish_reason: str | None,
             kyma: dict | None = None, *, now: int | None = None) -> dict:
    """`base` with its output, final status, usage and (after a continuation) the gateway's report."""
    status, incomplete = status_of(finish_reason)
    out = {**base, "status": status, "incomplete_details": incomplete, "output": output,
           "usage": responses_usage(usage),
           "completed_at": (int(time.time()) if now is None else now) if status == "completed" else None}
    if kyma:
        out["kyma"] = kyma
    return out


def status_of(finish_reason: str | None) -> tuple[str, dict | None]:
    """(status, incomplete_details) for a chat finish_reason."""
    reason = _INCOMPLETE.get(finish_reason or "")
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def message_item(item_id_: str, text: str, status: str) -> dict:
    return {"type": "message", "id": item_id_, "status": status, "role": "assistant",
            "content": [output_text(text)]}


def output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(item_id_: str, text: str, status: str) -> dict:
    """The model's reasoning as the upstream sent it (no summary: none was made)."""
    return {"type": "reasoning", "id": item_id_, "summary": [], "content": [{"type": "reasoning_text", "text": text}],
            "status": status}


def reasoning_text(message: dict) -> str:
    """The non-standard reasoning field of a message or delta (reasoning_content, or reasoning on some hosts)."""
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) else ""


def function_call_item(item_id_: str, call_id_: str, name: str, arguments: str, status: str) -> dict:
    return {"type": "function_call", "id": item_id_, "call_id": call_id_, "name": name, "arguments": arguments,
            "status": status}


def responses_usage(usage: dict | None) -> dict:
    """Responses usage from chat usage: input includes cached tokens, output includes reasoning."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    prompt, completion_tokens = int_or_zero(usage.get("prompt_tokens")), int_or_zero(usage.get("completion_tokens"))
    out = {"input_tokens": prompt,
           "input_tokens_details": {"cached_tokens": int_or_zero(details.get("cached_tokens", usage.get("cached_tokens"))),
                                    "cache_write_tokens": int_or_zero(details.get("cache_write_tokens",
                                                                           usage.get("cache_write_tokens")))},
           "output_tokens": completion_tokens,
           "output_tokens_details": {"reasoning_tokens": int_or_zero(completion.get("reasoning_tokens"))},
           "total_tokens": int_or_zero(usage.get("total_tokens")) or prompt + completion_tokens}
    for key in _KYMA_USAGE:
        if usage.get(key) is not None:
            out[key] = usage[key]
    return out


def item_id(response_id: str, prefix: str, n: int | None = None) -> str:
    """An output item's id, derived from the response's: msg_…, fc_…_n."""
    tail = response_id.removeprefix("resp_")
    return f"{prefix}_{tail}" if n is None else f"{prefix}_{tail}_{n}"


def call_id(upstream_id, fc_id: str) -> str:
    """The call id a client answers with: the upstream's, or one from the item's id when it sent none."""
    cleaned = _ID_CHARS.sub("_", upstream_id) if isinstance(upstream_id, str) else ""
    return cleaned or "call_" + fc_id.removeprefix("fc_")
