"""A fast, dependency-free token estimate used when an upstream reports no usage."""

from __future__ import annotations

import json
import re

# Word pieces, numbers and single punctuation marks; long words count as several tokens,
# which lands close to BPE tokenisers on English text and code (about 4 characters a token).
_PIECE = re.compile(r"[A-Za-z]+|\d{1,3}|[^\sA-Za-z\d]")


def count_text(text: str) -> int:
    """Estimated tokens in a string."""
    if not text:
        return 0
    n = 0
    for piece in _PIECE.findall(text):
        n += 1 + (len(piece) - 1) // 6 if piece[0].isalpha() else 1
    return n


# Per-message overhead in the chat format (role markers and separators).
MESSAGE_OVERHEAD = 4
IMAGE_TOKENS = 765  # a 512×512 tile at high detail, the usual OpenAI estimate


def count_content(content) -> int:
    """Tokens in an OpenAI message `content` (string or list of parts)."""
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text(content)
    n = 0
    for part in content if isinstance(content, list) else [content]:
        if not isinstance(part, dict):
            n += count_text(str(part))
        elif part.get("type") == "text":
            n += count_text(part.get("text") or "")
        elif part.get("type") in ("image_url", "input_image", "image"):
            n += IMAGE_TOKENS
        else:
            n += count_text(json.dumps(part, separators=(",", ":")))
    return n


def _text(value) -> str:
    """A field as text for counting: strings as they are, anything else as compact JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)


def count_messages(messages: list, tools: list | None = None) -> int:
    """Estimated prompt tokens for an OpenAI `messages` list (plus tool definitions)."""
    n = 3
    for m in messages or []:
        if not isinstance(m, dict):
            continue
        n += MESSAGE_OVERHEAD + count_content(m.get("content"))
        calls = m.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                n += count_text(_text(fn.get("name"))) + count_text(_text(fn.get("arguments")))
    if tools:
        n += count_text(json.dumps(tools, separators=(",", ":")))
    return n
