"""OpenAI chat.completion.chunk dicts → Anthropic Messages SSE events, incrementally."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kyma import tokens
from kyma.errors import KymaError, UpstreamError
from kyma.translate.anthropic_response import (anthropic_usage, message_id, reasoning_text, stop_reason,
                                              tool_use_id)
from kyma.translate.errors import anthropic_error_body
from kyma.translate.fields import choices_at_zero


def sse_event(data: dict) -> bytes:
    """One Anthropic SSE event: the `event:` line is mandatory (the SDK ignores events without it)."""
    return f"event: {data['type']}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


@dataclass
class _Tool:
    """One OpenAI tool call (by its stream index) and the Anthropic block it becomes."""

    id: str
    name: str
    pending: list[str] = field(default_factory=list)  # argument fragments not yet sent
    block: int | None = None  # Anthropic block index once opened
    sent: bool = False  # any argument fragment emitted
    closed: bool = False


class AnthropicStreamTranslator:
    """Feed OpenAI chunks one at a time; get the Anthropic SSE bytes to send for each.

    Anthropic blocks are sequential, OpenAI tool calls may overlap: a tool call's block opens when
    its first argument fragment arrives (or at the end), which keeps arguments streaming for the
    usual one-call-after-another order. Fragments for a call whose block has already closed (a
    round-robin interleaving no known upstream uses) cannot be placed and are dropped.
    """

    def __init__(self, *, model: str, input_tokens: int, message_id: str | None = None,
                 stop_sequences: list[str] | None = None):
        self.model = model
        self.input_tokens = input_tokens
        self.message_id = message_id
        self.stop_sequences = stop_sequences
        self._started = False
        self._done = False
        self._next_index = 0
        self._open: tuple[str, object] | None = None  # ("text"|"thinking", None) or ("tool", openai index)
        self._tools: dict[int, _Tool] = {}
        self._stop: tuple[str, str | None] | None = None
        self._usage: dict | None = None
        self._output_estimate = 0

    # --- public API ------------------------------------------------------------------------

    def start(self) -> list[bytes]:
        """message_start and a ping; called by feed() if the caller has not called it."""
        if self._started:
            return []
        self._started = True
        message = {"id": self.message_id or message_id(None), "type": "message", "role": "assistant",
                   "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": self.input_tokens, "output_tokens": 0,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
        return [sse_event({"type": "message_start", "message": message}), self.ping()]

    def ping(self) -> bytes:
        """A heartbeat event (the SDKs skip it)."""
        return sse_event({"type": "ping"})

    def feed(self, chunk: dict) -> list[bytes]:
        """The events one OpenAI chunk produces (possibly none)."""
        if self._done:
            return []
        if chunk.get("error"):
            return [self.error(UpstreamError.in_band(chunk["error"]))]
        out = self.start()
        self._usage = chunk.get("usage") or self._usage
        for choice in choices_at_zero(chunk):
            out += self._delta(choice.get("delta") or {})
            # Content first, then the finish reason: some hosts send both in one chunk.
            if choice.get("finish_reason"):
                out += self._close_open()
                self._stop = stop_reason(choice, self.stop_sequences)
        return out

    def finish(self, usage: dict | None = None, finish_reason: str | None = None,
               kyma: dict | None = None) -> list[bytes]:
        """Close every block, then message_delta (stop reason, final usage, and the gateway's `kyma`
        report when it has one) and message_stop."""
        if self._done:
            return []
        out = self.start() + self._close_open()
        for tool in self._tools.values():
            if tool.block is None:
                out += self._open_tool(tool) + self._close_open()
        if finish_reason is not None:
            self._stop = stop_reason({"finish_reason": finish_reason}, self.stop_sequences)
        reason, matched = self._stop or ("end_turn", None)
        final = anthropic_usage(usage or self._usage)
        if not (usage or self._usage):
            final["input_tokens"] = self.input_tokens
            final["output_tokens"] = self._output_estimate
        self._done = True
        delta = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": matched}, "usage": final}
        if kyma:
            delta["kyma"] = kyma  # the SDKs keep unknown fields
        out.append(sse_event(delta))
        out.append(sse_event({"type": "message_stop"}))
        return out

    def error(self, err: KymaError) -> bytes:
        """An `event: error` that ends the stream (a failure after the first byte)."""
        self._done = True
        body, _status = anthropic_error_body(err)
        return sse_event(body)

    # --- blocks ----------------------------------------------------------------------------

    def _delta(self, delta: dict) -> list[bytes]:
        out: list[bytes] = []
        reasoning = reasoning_text(delta)
        if reasoning:
            out += self._ensure_open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._block_delta({"type": "thinking_delta", "thinking": reasoning}))
            self._output_estimate += tokens.count_text(reasoning)
        text = delta.get("content") or delta.get("refusal")
        if isinstance(text, str) and text:
            out += self._ensure_open("text", {"type": "text", "text": ""})
            out.append(self._block_delta({"type": "text_delta", "text": text}))
            self._output_estimate += tokens.count_text(text)
        for fragment in delta.get("tool_calls") or []:
            out += self._tool_fragment(fragment)
        return out

    def _tool_fragment(self, fragment: dict) -> list[bytes]:
        index = fragment.get("index", 0)
        function = fragment.get("function") or {}
        tool = self._tools.get(index)
        if tool is None:
            tool = self._tools[index] = _Tool(tool_use_id(fragment.get("id")), function.get("name") or "")
        arguments = function.get("arguments")
        if not isinstance(arguments, str) or not arguments:
            return []
        self._output_estimate += tokens.count_text(arguments)
        if tool.closed:
            return []
        tool.pending.append(arguments)
        if self._open == ("tool", index):
            return self._flush(tool)
        return self._open_tool(tool)

    def _open_tool(self, tool: _Tool) -> list[bytes]:
        out = self._close_open()
        index = next(i for i, t in self._tools.items() if t is tool)
        tool.block = self._next_index
        out += self._start_block(("tool", index),
                                 {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}})
        return out + self._flush(tool)

    def _flush(self, tool: _Tool) -> list[bytes]:
        out = [self._block_delta({"type": "input_json_delta", "partial_json": p}) for p in tool.pending]
        tool.sent = tool.sent or bool(tool.pending)
        tool.pending.clear()
        return out

    def _ensure_open(self, kind: str, block: dict) -> list[bytes]:
        if self._open is not None and self._open[0] == kind:
            return []
        return self._close_open() + self._start_block((kind, None), block)

    def _start_block(self, key: tuple[str, object], block: dict) -> list[bytes]:
        self._open = key
        event = sse_event({"type": "content_block_start", "index": self._next_index, "content_block": block})
        self._next_index += 1
        return [event]

    def _block_delta(self, delta: dict) -> bytes:
        return sse_event({"type": "content_block_delta", "index": self._next_index - 1, "delta": delta})

    def _close_open(self) -> list[bytes]:
        if self._open is None:
            return []
        kind, index = self._open
        out = []
        if kind == "tool":
            tool = self._tools[index]
            if not tool.sent:
                # Claude Code and the TS SDK build input only from deltas: never leave it empty.
                out.append(self._block_delta({"type": "input_json_delta", "partial_json": "{}"}))
            tool.closed = True
        self._open = None
        return out + [sse_event({"type": "content_block_stop", "index": self._next_index - 1})]
