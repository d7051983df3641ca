"""Render a simulated reply in the OpenAI wire format: a completion body or stream chunks."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from kyma.sim.replies import Reply
from kyma.tokens import count_text

FINGERPRINT = "fp_kyma_sim"


@dataclass(frozen=True)
class Completion:
    """One finished simulated completion, ready to render."""

    id: str
    created: int
    model: str
    reply: Reply
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int

    def usage(self) -> dict:
        """OpenAI usage object; prompt_tokens includes the cached ones."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        }


def completion_body(c: Completion, with_usage: bool = True) -> dict:
    """The non-streamed `chat.completion` object."""
    message = {"role": "assistant", "content": c.reply.content, "refusal": None, "annotations": []}
    if c.reply.tool_calls:
        message["tool_calls"] = [{"id": t.id, "type": "function",
                                  "function": {"name": t.name, "arguments": t.arguments}}
                                 for t in c.reply.tool_calls]
    return {"id": c.id, "object": "chat.completion", "created": c.created, "model": c.model,
            "system_fingerprint": FINGERPRINT, "service_tier": "default",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": c.reply.finish_reason}],
            "usage": c.usage() if with_usage else None}


@dataclass(frozen=True)
class StreamEvent:
    """One SSE data payload and the tokens it represents (for pacing)."""

    payload: dict
    tokens: int = 0

    def encode(self) -> bytes:
        """The `data: {...}` frame."""
        return b"data: " + json.dumps(self.payload, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def stream_events(c: Completion, include_usage: bool) -> list[StreamEvent]:
    """Every chunk of the stream in order: role, content or tool-call fragments, finish, usage."""
    def chunk(delta: dict | None, finish: str | None = None, tokens: int = 0) -> StreamEvent:
        payload = {"id": c.id, "object": "chat.completion.chunk", "created": c.created,
                   "model": c.model, "system_fingerprint": FINGERPRINT,
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            payload["usage"] = None
        return StreamEvent(payload, tokens)

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    for piece in split_text(c.reply.content or ""):
        events.append(chunk({"content": piece}, tokens=count_text(piece)))
    for i, call in enumerate(c.reply.tool_calls):
        events.append(chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                             "function": {"name": call.name, "arguments": ""}}]},
                            tokens=count_text(call.name)))
        for frag in split_even(call.arguments, 4):
            events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]},
                                tokens=count_text(frag)))
    events.append(chunk({}, c.reply.finish_reason))
    if include_usage:
        events.append(StreamEvent({"id": c.id, "object": "chat.completion.chunk", "created": c.created,
                                   "model": c.model, "system_fingerprint": FINGERPRINT,
                                   "choices": [], "usage": c.usage()}))
    return events


def split_text(text: str) -> list[str]:
    """Content deltas of about two words each (at least two deltas for any text of 2+ chars)."""
    words = re.findall(r"\s*\S+|\s+$", text)
    pieces = ["".join(words[i:i + 2]) for i in range(0, len(words), 2)]
    if len(pieces) == 1 and len(text) > 1:
        pieces = split_even(text, 2)
    return pieces


def split_even(text: str, parts: int) -> list[str]:
    """`text` cut into up to `parts` consecutive non-empty fragments."""
    if not text:
        return []
    size = max(1, -(-len(text) // parts))
    return [text[i:i + size] for i in range(0, len(text), size)]
