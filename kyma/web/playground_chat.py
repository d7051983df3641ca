"""The playground's seam to the chat pipeline: a typed prompt in, text deltas and a summary out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from kyma import chat
from kyma.errors import InvalidRequest
from kyma.services import dashboard
from kyma.services.accounts import Principal
from kyma.services.pricing import micros_to_usd, usd_to_micros
from kyma.web.money import usd

if TYPE_CHECKING:
    from kyma.runtime import Runtime

MAX_MESSAGES = 50
MAX_CHARS = 100_000


@dataclass(frozen=True)
class PlaygroundPrompt:
    """What the playground form sends: a model or alias, settings and the conversation so far."""

    model: str
    messages: tuple[dict, ...]
    system: str = ""
    temperature: float | None = None
    max_tokens: int | None = None

    @classmethod
    def from_message(cls, data: dict) -> "PlaygroundPrompt":
        """Validate a websocket `start` message; bad input is an InvalidRequest."""
        model = data.get("model")
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequest("Choose a model.", param="model")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
            raise InvalidRequest(f"Send between 1 and {MAX_MESSAGES} messages.", param="messages")
        clean = []
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") \
                    or not isinstance(m.get("content"), str):
                raise InvalidRequest("Each message needs a role (user or assistant) and text.", param="messages")
            clean.append({"role": m["role"], "content": m["content"]})
        if sum(len(m["content"]) for m in clean) > MAX_CHARS:
            raise InvalidRequest("The conversation is too long for the playground.", param="messages")
        system = data.get("system") or ""
        return cls(model.strip(), tuple(clean), system if isinstance(system, str) else "",
                   _number(data.get("temperature"), float, 0, 2, "temperature"),
                   _number(data.get("max_tokens"), int, 1, 1_000_000, "max_tokens"))

    def chat_body(self) -> dict:
        """The OpenAI chat-completions request this prompt stands for (always streamed)."""
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + list(self.messages)
        body = {"model": self.model, "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body


def compare_prompt(data: dict) -> PlaygroundPrompt | None:
    """The second side of a compared `start` (same settings, its own model and history), or None."""
    model = data.get("compare")
    if model in (None, ""):
        return None
    if not isinstance(model, str):
        raise InvalidRequest("Choose a model to compare with.", param="compare")
    messages = data.get("compare_messages", data.get("messages"))
    return PlaygroundPrompt.from_message({**data, "model": model, "messages": messages})


def _number(value, kind, low, high, name):
    if value in (None, ""):
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidRequest(f"{name} must be a number.", param=name) from exc
    if not low <= number <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}.", param=name)
    return number


@dataclass(frozen=True)
class Delta:
    """A piece of the reply's text."""

    text: str


@dataclass(frozen=True)
class Finished:
    """How the reply was served and what it cost."""

    model: str
    provider: str | None
    alias: str | None
    fallback_layer: int | None
    simulated: bool
    cost_usd: float
    cost: str  # cost_usd as the pages write it
    usage: dict = field(default_factory=dict)


def billed_summary(principal: Principal, call: chat.ChatCall) -> Finished | None:
    """What a stopped reply was billed, from its request-log row (None if it never got one)."""
    row = dashboard.logged_request(principal.account_id, call.request_id)
    if row is None:
        return None
    usage = {"prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
             "total_tokens": row.prompt_tokens + row.completion_tokens}
    return Finished(model=row.model_served or row.model_requested, provider=row.provider, alias=row.alias,
                    fallback_layer=row.fallback_layer or None, simulated=row.simulated,
                    cost_usd=micros_to_usd(row.cost_micros), cost=usd(row.cost_micros), usage=usage)


def stream_reply(rt: Runtime, principal: Principal, prompt: PlaygroundPrompt, call: chat.ChatCall,
                 tick_seconds: float = 0.25) -> Iterator[Delta | Finished | None]:
    """Stream a reply through the API's own pipeline (limits, credit hold, fallback, settle, log).

    Yields Delta pieces, then one Finished; yields None every `tick_seconds` of upstream silence so
    the caller can notice a Stop. Closing the generator closes the upstream call and bills what was
    produced, exactly as a client disconnect on /v1/chat/completions does.
    """
    stream = chat.serve(rt, call, lambda: principal, prompt.chat_body, keepalive=tick_seconds)
    assert isinstance(stream, chat.ChatStream)  # the playground always streams
    try:
        for event in stream.events():
            if isinstance(event, chat.Chunk):
                text = "".join((c.get("delta") or {}).get("content") or "" for c in event.data.get("choices") or [])
                if text:
                    yield Delta(text)
            elif isinstance(event, chat.KeepAlive):
                yield None
            elif isinstance(event, chat.Done):
                cost = event.usage.get("cost") or 0
                cand = stream.served.candidate
                yield Finished(model=cand.model.id, provider=cand.route.provider.name, alias=stream.prep.alias,
                               fallback_layer=cand.layer or None, simulated=cand.route.provider.simulated,
                               cost_usd=float(cost), cost=usd(usd_to_micros(cost)), usage=event.usage)
            elif isinstance(event, chat.Failed):
                raise event.error
    finally:
        stream.close()
