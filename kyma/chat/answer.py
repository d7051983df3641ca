"""The answer a streamed request has given its client so far, whichever upstreams wrote it."""

from __future__ import annotations

import time

from kyma.chat.usage import completion_text
from kyma.tokens import count_text


class Answer:
    """What the client has received: its text, its finish, and the chunks rewritten for it.

    Every chunk goes out under one id and one model (the one that started), so that a
    continuation by another upstream reads as the same answer; its usage is the upstream's, kept
    for the end (the client's comes with the final chunk, with cost).
    """

    def __init__(self, request_id: str, model_id: str, client_wants_usage: bool):
        self.id = f"chatcmpl-{request_id}"
        self.model_id = model_id
        self.created = int(time.time())
        self.client_wants_usage = client_wants_usage
        self.text: list[str] = []  # every delta's text, reasoning and tool calls included: what is billed
        self.content: list[str] = []  # the answer's own text: what a continuation's prefill repeats
        self.tool_calls = False  # a tool call was relayed: no prefill can continue that
        self.finish_reason: str | None = None
        self.finish_chunk: dict | None = None  # held back to carry the usage, for clients that did not ask
        self.usage: dict | None = None  # the current upstream's
        self.segment = 0  # where the current upstream's part of `text` starts
        self.continuing = False  # a continuation writes now: its role is not the client's news

    def relay(self, chunk: dict) -> dict | None:
        """The chunk as the client gets it, or None (usage-only, or the finish held for the end)."""
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        for ch in choices:
            delta = ch.get("delta") or {}
            self.text.append(completion_text(delta))  # a delta has a message's fields
            if delta.get("content"):
                self.content.append(delta["content"])
            self.tool_calls = self.tool_calls or bool(delta.get("tool_calls"))
            if ch.get("finish_reason"):
                self.finish_reason = ch["finish_reason"]
        if not choices:
            return None  # the upstream's usage-only chunk: ours comes at the end, with cost
        if self.continuing:
            chunk = dict(chunk, choices=[dict(ch, delta={k: v for k, v in (ch.get("delta") or {}).items()
                                                         if k != "role"}) for ch in choices])
            choices = chunk["choices"]
        out = dict(chunk, id=self.id, model=self.model_id, created=self.created)
        out.pop("usage", None)
        if self.finish_reason and any(ch.get("finish_reason") for ch in choices) and not self.client_wants_usage:
            self.finish_chunk = out  # usage rides on the final chunk for clients that did not ask
            return None
        return out

    def hand_over(self) -> None:
        """Another upstream goes on from here (its usage counts its prefill: not the client's)."""
        self.segment = len(self.text)
        self.usage = None
        self.continuing = True

    def all_text(self) -> str:
        return "".join(self.text)

    def part_text(self) -> str:
        """What the current upstream has added."""
        return "".join(self.text[self.segment:])

    def prefill(self) -> str:
        return "".join(self.content)

    def tokens(self) -> int:
        """Tokens the client has received, reasoning included (what max_tokens counts)."""
        return count_text(self.all_text())

    def final_chunks(self, usage: dict, extra: dict) -> list[dict]:
        """The end of the stream: a finish (always exactly one) with the usage, or a usage chunk after it."""
        base = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model_id}
        if self.client_wants_usage:
            out = []
            if self.finish_reason is None:  # the upstream never said: the client still gets one finish
                self.finish_reason = "stop"
                out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            return out + [{**base, "choices": [], "usage": usage, **extra}]
        final = self.finish_chunk or {**base, "choices": [
            {"index": 0, "delta": {}, "finish_reason": self.finish_reason or "stop"}]}
        return [{**final, "usage": usage, **extra}]
