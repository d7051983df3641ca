"""Legacy completions for the simulator: a prompt (and a suffix, filled in the middle) → text_completion."""

from __future__ import annotations

import dataclasses

from kyma.sim.errors import SimRequestError
from kyma.sim.prompt_cache import PrefixCache
from kyma.sim.render import FINGERPRINT, Completion, StreamEvent, split_text
from kyma.sim.replies import Reply, completion_tokens, limit_reply
from kyma.sim.completions import build_completion
from kyma.tokens import count_text


def _prompt(body: dict) -> str:
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise SimRequestError(400, "'prompt' must be a string.", param="prompt")
    return prompt


def fill_in(prompt: str, suffix: str) -> str:
    """The simulated middle: names the end of the prefix and the start of the suffix."""
    before = prompt.split()[-1] if prompt.split() else ""
    after = suffix.split()[0] if suffix.split() else ""
    return f"/* filled in between {before!r} and {after!r} */"


def build_text_completion(body, provider: str, cache: PrefixCache, context_window: int = 0) -> Completion:
    """The completion of a prompt, as the chat simulator would answer it as a user message; with a
    suffix, a deterministic middle. Prompt tokens are the prompt's and the suffix's own."""
    prompt = _prompt(body)
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise SimRequestError(400, "'suffix' must be a string.", param="suffix")
    chat_body = {k: v for k, v in body.items() if k not in ("prompt", "suffix")}
    chat_body["messages"] = [{"role": "user", "content": prompt or " "}]
    c = build_completion(chat_body, provider, cache, context_window)
    if suffix and "say exactly:" not in prompt.lower():
        limit = body.get("max_tokens")
        c = dataclasses.replace(c, reply=limit_reply(Reply(fill_in(prompt, suffix)), body.get("stop"), limit))
    return dataclasses.replace(c, id=c.id.replace("chatcmpl-", "cmpl-"), cached_tokens=0,
                               prompt_tokens=count_text(prompt) + count_text(suffix or ""),
                               completion_tokens=completion_tokens(c.reply))


def text_completion_body(c: Completion, with_usage: bool = True) -> dict:
    """The non-streamed `text_completion` object."""
    return {"id": c.id, "object": "text_completion", "created": c.created, "model": c.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"text": c.reply.content or "", "index": 0, "logprobs": None,
                         "finish_reason": c.reply.finish_reason}],
            "usage": c.usage() if with_usage else None}


def text_completion_events(c: Completion, include_usage: bool) -> list[StreamEvent]:
    """Every chunk of a streamed text completion: text pieces, the finish, then usage if asked."""
    def chunk(text: str, finish: str | None = None) -> StreamEvent:
        payload = {"id": c.id, "object": "text_completion", "created": c.created, "model": c.model,
                   "system_fingerprint": FINGERPRINT,
                   "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            payload["usage"] = None
        return StreamEvent(payload, count_text(text))

    events = [chunk(piece) for piece in split_text(c.reply.content or "")]
    events.append(chunk("", c.reply.finish_reason))
    if include_usage:
        events.append(StreamEvent({"id": c.id, "object": "text_completion", "created": c.created,
                                   "model": c.model, "choices": [], "usage": c.usage()}))
    return events
