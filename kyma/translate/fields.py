"""Readers of JSON fields that every protocol translation shares."""

from __future__ import annotations

from kyma.errors import InvalidRequest


def string_field(value, param: str, *, required: bool = False) -> str:
    """A string field ("" when absent and optional), or a 400 naming `param`."""
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidRequest(f"'{param}' must be a {'non-empty ' if required else ''}string.", param=param)
    return value


def text_of(content) -> str:
    """An OpenAI message's text: the string itself, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def int_or_zero(value) -> int:
    """A count from an upstream's usage: a number (not a bool), else 0."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def choices_at_zero(chunk: dict) -> list[dict]:
    """A chat chunk's choices at index 0: Messages and Responses replies have one choice, so others are dropped."""
    choices = chunk.get("choices") or []
    # A chunk nearly always carries that one choice alone: hand back its own list, copying nothing.
    if len(choices) == 1 and choices[0].get("index", 0) == 0:
        return choices
    return [choice for choice in choices if choice.get("index", 0) == 0]
