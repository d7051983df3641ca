"""Deterministic replies derived from the prompt: text, tool calls or JSON.

Prompt conventions (in the last user message) that make tests easy:
  `say exactly: X`  → the reply is X, verbatim (everything after the colon);
  `count to N`      → "1 2 3 … N" (a long, predictable reply for streams and max_tokens);
  a tool's name     → with `tools` given, a call to that tool (two names → two parallel calls);
  `key=value` / `key: value` → used as that property's value in generated JSON arguments.
Otherwise the reply quotes the start of the last user message and names the provider.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from kyma.sim.schema_values import value_for_schema
from kyma.tokens import count_text

_SAY_EXACTLY = re.compile(r"say exactly:\s?(.*)\Z", re.IGNORECASE | re.DOTALL)
_COUNT_TO = re.compile(r"count to (\d{1,5})\b", re.IGNORECASE)
_HINTS = tuple(re.compile(rf"\b([A-Za-z_][\w-]*)\s*{sep}\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s,;]+))")
               for sep in ("=", ":"))  # `key=value` pairs win over the looser `key: value`
_QUOTED = re.compile(r"\"([^\"]{1,200})\"")
_PLACE = re.compile(r"\b(?:in|for|at|of|about|to|from)\s+([A-Z][\w-]*(?:\s+[A-Z][\w-]*)*)")
_IMAGE_TYPES = ("image_url", "input_image", "image")


@dataclass(frozen=True)
class ToolCall:
    """One function call the simulated model makes."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    """What the simulated model answers, before it is rendered as JSON or SSE."""

    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"


def text_of(content) -> str:
    """The text of a message `content` (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text") or "" for p in content
                         if isinstance(p, dict) and p.get("type") in ("text", "input_text"))
    return ""


def count_images(messages: list) -> int:
    """Image parts in user messages (never fetched: the simulator only counts them)."""
    return sum(1 for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list)
               for p in m["content"] if isinstance(p, dict) and p.get("type") in _IMAGE_TYPES)


def last_user_text(messages: list) -> str:
    """Text of the last user message ('' when there is none)."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return text_of(m.get("content"))
    return ""


def prompt_hints(text: str) -> dict:
    """`key=value` and `key: value` pairs in the prompt, plus a quoted string or a place name."""
    hints = {}
    for pattern in _HINTS:
        for key, dq, sq, bare in pattern.findall(text):
            hints.setdefault(key.lower(), dq or sq or bare)
    quoted = _QUOTED.search(text)
    place = _PLACE.search(text)
    if quoted or place:
        hints["_free_text"] = (quoted or place).group(1)
    return hints


def compose_reply(body: dict, provider: str) -> Reply:
    """The deterministic reply to a chat completions request body."""
    messages = body.get("messages") or []
    tool_calls = plan_tool_calls(body)
    if tool_calls:
        return Reply(None, tool_calls, "tool_calls")
    text = _base_text(messages, provider, body.get("model", ""))
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        hints = prompt_hints(last_user_text(messages))
        return Reply(json.dumps(value_for_schema(schema, _fill_free_text(schema, hints))))
    if fmt.get("type") == "json_object":
        return Reply(_json_object_text(text))
    return Reply(text)


def _base_text(messages: list, provider: str, model: str) -> str:
    trailing_tools = _trailing_tool_results(messages)
    if trailing_tools:
        return " ".join(f"The {name} tool returned: {_excerpt(result, 60)}."
                        for name, result in trailing_tools)
    user = last_user_text(messages)
    said = _SAY_EXACTLY.search(user)
    if said:
        return said.group(1)
    counted = _COUNT_TO.search(user)
    if counted:
        return " ".join(str(i) for i in range(1, min(int(counted.group(1)), 10000) + 1))
    images = count_images(messages)
    seen = f"I see {images} image{'s' if images != 1 else ''}. " if images else ""
    quote = f'You said: "{_excerpt(user, 30)}". ' if user.strip() else ""
    return f"{seen}{quote}This is a simulated reply from {provider} ({model})."


def _excerpt(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + ("…" if len(parts) > words else "")


def _trailing_tool_results(messages: list) -> list[tuple[str, str]]:
    """(tool name, result text) for the tool messages that end the conversation."""
    names = {}
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "assistant":
            for call in m.get("tool_calls") or []:
                names[call.get("id")] = ((call.get("function") or {}).get("name")) or "tool"
    out = []
    for m in reversed(messages):
        if not (isinstance(m, dict) and m.get("role") == "tool"):
            break
        out.append((names.get(m.get("tool_call_id"), "tool"), text_of(m.get("content"))))
    return out[::-1]


def _json_object_text(text: str) -> str:
    try:
        if isinstance(json.loads(text), dict):
            return text
    except ValueError:
        pass  # not JSON: wrap the plain reply below
    return json.dumps({"reply": text})


def plan_tool_calls(body: dict) -> tuple[ToolCall, ...]:
    """The tool calls the prompt asks for (empty when it asks for none)."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type", "function") == "function"]
    choice = body.get("tool_choice", "auto")
    messages = body.get("messages") or []
    if not tools or choice == "none":
        return ()
    by_name = {(t.get("function") or {}).get("name"): t for t in tools}
    ends_with_tool_result = bool(messages) and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"
    if isinstance(choice, dict):
        wanted = ((choice.get("function") or {}).get("name")) or choice.get("name")
        chosen = [wanted] if wanted in by_name else []
    else:
        chosen = [] if ends_with_tool_result else _mentioned(last_user_text(messages), by_name)
        if choice == "required" and not chosen:
            chosen = [next(iter(by_name))]
    if body.get("parallel_tool_calls") is False:
        chosen = chosen[:1]
    text = last_user_text(messages)
    return tuple(_make_call(by_name[name], text, i, messages) for i, name in enumerate(chosen))


def _mentioned(text: str, by_name: dict) -> list[str]:
    """Tool names found in the text, in the order they appear."""
    found = []
    for name in by_name:
        if not name:
            continue
        match = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE)
        if match:
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]


def _make_call(tool: dict, text: str, index: int, messages: list) -> ToolCall:
    fn = tool.get("function") or {}
    schema = fn.get("parameters") or {"type": "object", "properties": {}}
    args = value_for_schema(schema, _fill_free_text(schema, prompt_hints(text)))
    digest = hashlib.sha256(json.dumps([messages, fn.get("name"), index], sort_keys=True,
                                       default=str).encode()).hexdigest()
    return ToolCall(id=f"call_{digest[:24]}", name=fn.get("name") or "tool",
                    arguments=json.dumps(args))


def _fill_free_text(schema: dict, hints: dict) -> dict:
    """Give a quoted string or place from the prompt to the first string property left without a hint."""
    free = hints.pop("_free_text", None)
    if free is None or not isinstance(schema, dict):
        return hints
    props = schema.get("properties") or {}
    order = list(schema.get("required") or []) + [k for k in props if k not in (schema.get("required") or [])]
    for key in order:
        sub = props.get(key) or {}
        if sub.get("type") == "string" and "enum" not in sub and "format" not in sub and key.lower() not in hints:
            hints[key.lower()] = free
            break
    return hints


def limit_reply(reply: Reply, stop, max_tokens: int | None) -> Reply:
    """Apply `stop` sequences (stop text is not returned) and a max_tokens cap ("length")."""
    if reply.content is None:
        return reply
    text = reply.content
    stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str) and s]
    cuts = [text.find(s) for s in stops if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    if max_tokens is not None and count_text(text) > max_tokens:
        kept, used = [], 0
        for piece in re.findall(r"\S+\s*", text):
            cost = count_text(piece)
            if used + cost > max_tokens:
                break
            kept.append(piece)
            used += cost
        return Reply("".join(kept).rstrip(), (), "length")
    return Reply(text, reply.tool_calls, reply.finish_reason)


def completion_tokens(reply: Reply) -> int:
    """Tokens the reply costs (text, or tool names plus arguments)."""
    n = count_text(reply.content or "")
    for call in reply.tool_calls:
        n += count_text(call.name) + count_text(call.arguments) + 3
    return max(n, 1)
