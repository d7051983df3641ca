"""OpenAI chat.completion.chunk dicts → Responses API SSE events, incrementally."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kyma.errors import KymaError, UpstreamError
from kyma.translate.fields import choices_at_zero
from kyma.translate.responses_response import (call_id, finished, function_call_item, item_id, message_item,
                                               output_text, reasoning_item, reasoning_text, status_of)


def sse_event(data: dict) -> bytes:
    """One Responses SSE event: `event:` names the type, `data:` carries it with its sequence number."""
    return f"event: {data['type']}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


@dataclass
class _Item:
    """One output item being streamed: reasoning, a message (text) or a function call (by its chat tool index)."""

    index: int  # output_index
    item: dict
    parts: list[str] = field(default_factory=list)  # text or argument fragments so far
    done: bool = False


class ResponsesStreamTranslator:
    """Feed chat chunks one at a time; get the Responses SSE bytes to send for each.

    Output items follow the order their first fragment arrived: reasoning opens a reasoning item,
    text a message item, a tool call a function_call item. Reasoning and messages take turns (each
    closes when something else starts); function calls stay open until the end, so interleaved
    argument fragments still reach their own item.
    """

    def __init__(self, base: dict):
        self.base = base  # the response object before any output (new_response)
        self.response: dict | None = None  # the final response, once finish() or error() ran
        self._seq = 0
        self._started = False
        self._done = False
        self._items: list[_Item] = []
        self._text: _Item | None = None  # the open reasoning or message item
        self._tools: dict[int, _Item] = {}  # chat tool index → its function_call item
        self._finish: str | None = None
        self._usage: dict | None = None

    # --- public API ------------------------------------------------------------------------

    def start(self) -> list[bytes]:
        """response.created and response.in_progress; called by feed() if the caller has not."""
        if self._started:
            return []
        self._started = True
        return [self._event("response.created", response=self.base),
                self._event("response.in_progress", response=self.base)]

    def feed(self, chunk: dict) -> list[bytes]:
        """The events one chat chunk produces (possibly none)."""
        if self._done:
            return []
        if chunk.get("error"):
            return self.error(UpstreamError.in_band(chunk["error"]))
        out = self.start()
        self._usage = chunk.get("usage") or self._usage
        for choice in choices_at_zero(chunk):
            delta = choice.get("delta") or {}
            thought = reasoning_text(delta)
            if thought:
                out += self._text_delta("reasoning", thought)
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                out += self._text_delta("message", text)
            for fragment in delta.get("tool_calls") or []:
                if isinstance(fragment, dict):
                    out += self._tool_fragment(fragment)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def finish(self, usage: dict | None = None, finish_reason: str | None = None,
               kyma: dict | None = None, *, now: int | None = None) -> list[bytes]:
        """Close every item, then response.completed (or response.incomplete) with the whole response."""
        if self._done:
            return []
        out = self.start()
        self._finish = finish_reason or self._finish
        status, _ = status_of(self._finish)
        cut = self._items[-1] if status == "incomplete" and self._items else None  # a cut-short answer's last
        for item in self._items:
            out += self._close(item, "incomplete" if item is cut else "completed")
        self._done = True
        self.response = finished(self.base, [i.item for i in self._items], usage or self._usage, self._finish,
                                 kyma, now=now)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, response=self.response))
        return out

    def error(self, err: KymaError) -> list[bytes]:
        """response.failed, after response.created if nothing was sent yet: a failure after the first byte."""
        if self._done:
            return []
        out = self.start()
        self._done = True
        for item in self._items:
            if not item.done:  # what the client has of it, marked as cut short
                self._fill(item, "incomplete")
        self.response = {**self.base, "status": "failed", "output": [i.item for i in self._items],
                         "error": {"code": "rate_limit_exceeded" if err.status == 429 else "server_error",
                                   "message": err.message}}
        out.append(self._event("response.failed", response=self.response))
        return out

    # --- items -----------------------------------------------------------------------------

    def _text_delta(self, kind: str, text: str) -> list[bytes]:
        """Text for a reasoning or a message item: the open one of that kind, or a new one."""
        out: list[bytes] = []
        item = self._text
        if item is not None and item.item["type"] != kind:
            out += self._close(item, "completed")
            item = None
        if item is None:
            out += self._open_text(kind)
            item = self._text
        item.parts.append(text)
        ids = {"item_id": item.item["id"], "output_index": item.index, "content_index": 0}
        if kind == "message":
            out.append(self._event("response.output_text.delta", **ids, delta=text, logprobs=[]))
        else:
            out.append(self._event("response.reasoning_text.delta", **ids, delta=text))
        return out

    def _open_text(self, kind: str) -> list[bytes]:
        n = sum(1 for i in self._items if i.item["type"] == kind) or None  # the first is named as a plain reply's
        if kind == "message":
            item = self._text = self._add(message_item(item_id(self.base["id"], "msg", n), "", "in_progress"))
        else:
            item = self._text = self._add(reasoning_item(item_id(self.base["id"], "rs", n), "", "in_progress"))
        item.item["content"] = []
        out = [self._event("response.output_item.added", output_index=item.index, item=item.item)]
        if kind == "message":
            out.append(self._event("response.content_part.added", item_id=item.item["id"], output_index=item.index,
                                   content_index=0, part=output_text("")))
        return out

    def _tool_fragment(self, fragment: dict) -> list[bytes]:
        index = fragment.get("index", 0)
        function = fragment.get("function") or {}
        out: list[bytes] = []
        item = self._tools.get(index)
        if item is None:
            if self._text is not None:  # a message (or reasoning) ends where a tool call starts
                out += self._close(self._text, "completed")
                self._text = None
            fc = item_id(self.base["id"], "fc", len(self._tools))
            item = self._tools[index] = self._add(function_call_item(
                fc, call_id(fragment.get("id"), fc), function.get("name") or "", "", "in_progress"))
            out.append(self._event("response.output_item.added", output_index=item.index, item=item.item))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments and not item.done:
            item.parts.append(arguments)
            out.append(self._event("response.function_call_arguments.delta", item_id=item.item["id"],
                                   output_index=item.index, delta=arguments))
        return out

    def _close(self, item: _Item, status: str) -> list[bytes]:
        if item.done:
            return []
        item.done = True
        text = self._fill(item, status)
        ids = {"item_id": item.item["id"], "output_index": item.index}
        out = []
        if item.item["type"] == "message":
            out.append(self._event("response.output_text.done", **ids, content_index=0, text=text, logprobs=[]))
            out.append(self._event("response.content_part.done", **ids, content_index=0, part=output_text(text)))
        elif item.item["type"] == "reasoning":
            out.append(self._event("response.reasoning_text.done", **ids, content_index=0, text=text))
        else:
            out.append(self._event("response.function_call_arguments.done", **ids, arguments=text))
        out.append(self._event("response.output_item.done", output_index=item.index, item=item.item))
        return out

    @staticmethod
    def _fill(item: _Item, status: str) -> str:
        """Put the fragments so far into the item, with its status; returns its text or arguments."""
        text = "".join(item.parts)
        if item.item["type"] == "message":
            item.item.update(content=[output_text(text)], status=status)
        elif item.item["type"] == "reasoning":
            item.item.update(content=[{"type": "reasoning_text", "text": text}], status=status)
        else:
            item.item.update(arguments=text, status=status)
        return text

    def _add(self, item: dict) -> _Item:
        entry = _Item(len(self._items), item)
        self._items.append(entry)
        return entry

    def _event(self, kind: str, **fields) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return sse_event(data)  # serialised now: later changes to an item cannot alter what was said
