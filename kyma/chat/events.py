"""What a chat stream yields to the edge that frames it, and the walk's own markers."""

from __future__ import annotations

from dataclasses import dataclass

from kyma.errors import KymaError


@dataclass
class Chunk:
    """An OpenAI chat.completion.chunk, rewritten for the client (id, model)."""

    data: dict


@dataclass
class KeepAlive:
    """Nothing from upstream for a while: send a comment so proxies keep the connection."""


@dataclass
class Done:
    """The stream finished and was settled; `usage` is the full usage object (cost included).

    `kyma` reports what the client should know but headers could no longer say (they were sent):
    {"continued_by": {"model", "provider"}, "attempts"} when another candidate finished the answer.
    """

    usage: dict
    finish_reason: str | None
    kyma: dict | None = None


@dataclass
class Failed:
    """The stream failed after the response started: end with an error event."""

    error: KymaError


@dataclass
class Started:
    """A route produced its first content: from here the stream is committed to it (not sent)."""


@dataclass
class Unserved:
    """Every route failed before any content: an HTTP error if the response has not started (not sent)."""

    error: KymaError


def is_lead(chunk: dict) -> bool:
    """A chunk with nothing a client could see yet (role-only or empty delta, no finish, no usage)."""
    if chunk.get("usage"):
        return False
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") or delta.get("content") or delta.get("tool_calls") \
                or delta.get("reasoning_content") or delta.get("reasoning") or delta.get("refusal"):
            return False
    return True
