"""The playground's seam to the chat pipeline: a typed prompt in, text deltas and a summary out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from kyma.errors import InvalidRequest, UpstreamError
from kyma.services.accounts import Principal

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


def _number(value, kind, low, high, name):
    if value in (None, ""):
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError) as exc:
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
    usage: dict = field(default_factory=dict)


def stream_reply(principal: Principal, prompt: PlaygroundPrompt) -> Iterator[Delta | Finished]:
    """Stream a reply through the same pipeline (limits, credits, fallback, log) as the API."""
    try:
        from kyma.services import gateway
    except ImportError as exc:
        raise UpstreamError("The chat pipeline is not available in this build yet.") from exc
    raise UpstreamError("The chat pipeline has no streaming entry point the playground understands.")
