"""Turn a chat completions request body into a finished simulated Completion."""

from __future__ import annotations

import time
import uuid

from kyma.sim.errors import SimRequestError, context_length_error
from kyma.sim.prompt_cache import PrefixCache
from kyma.sim.render import Completion
from kyma.sim.replies import Reply, completion_tokens, compose_reply, limit_reply, text_of
from kyma.tokens import count_messages


def validate(body) -> None:
    """Reject what a real provider would reject with 400."""
    if not isinstance(body, dict):
        raise SimRequestError(400, "We could not parse the JSON body of your request.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise SimRequestError(400, "you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise SimRequestError(400, "'messages' must be a non-empty array of objects.", param="messages")
    if body.get("n") not in (None, 1):
        raise SimRequestError(400, "The simulator supports only n=1.", param="n")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise SimRequestError(400, f"Invalid '{key}': expected an integer of at least 1.", param=key)


def build_completion(body: dict, provider: str, cache: PrefixCache, context_window: int = 0,
                     prefill: str = "continue") -> Completion:
    """Validate, compose the deterministic reply, apply stop/max_tokens, and count usage.

    A trailing assistant message is a prefill: the reply is the rest of the answer it begins
    (the whole answer when it begins something else), or a 400 when `prefill` is "reject".
    """
    validate(body)
    messages, tools = body["messages"], body.get("tools")
    prompt_tokens = count_messages(messages, tools)
    if context_window and prompt_tokens > context_window:
        raise context_length_error(context_window, prompt_tokens)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    started = _prefill_text(messages)
    if started is not None and prefill == "reject":
        raise SimRequestError(400, "This model does not support a trailing assistant message (prefill).",
                              param="messages", code="prefill_unsupported")
    if started is not None:
        whole = compose_reply(dict(body, messages=messages[:-1]), provider)
        rest = whole.content[len(started):] if (whole.content or "").startswith(started) else whole.content
        reply = limit_reply(Reply(rest, whole.tool_calls, whole.finish_reason), body.get("stop"), limit)
    else:
        reply = limit_reply(compose_reply(body, provider), body.get("stop"), limit)
    cached = min(cache.cached_tokens(body["model"], messages, tools), prompt_tokens)
    return Completion(id=f"chatcmpl-{uuid.uuid4().hex[:24]}", created=int(time.time()),
                      model=body["model"], reply=reply, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens(reply), cached_tokens=cached)


def _prefill_text(messages: list) -> str | None:
    """The text of a trailing assistant message (a prefill), or None when the conversation ends otherwise."""
    last = messages[-1]
    if last.get("role") != "assistant" or last.get("tool_calls"):
        return None
    return text_of(last.get("content"))
