"""The one JSON reader for request bodies and websocket messages: what json.loads accepts, minus what
the rest of the gateway cannot carry.

Python's json module accepts NaN and Infinity (and reads 1e400 as infinity), which are not JSON
and which upstreams refuse; it decodes a lone surrogate escape ("\\ud800") into a string that
cannot be written to a database or hashed; and it follows nesting as deep as the interpreter's
recursion limit, deeper than the code that walks the body later (json.dumps of the upstream body)
can follow. Each is refused here with ValueError, or RecursionError for nesting, so every endpoint
answers a 400.
"""

from __future__ import annotations

import json
import math

MAX_DEPTH = 100  # JSON schemas of tools nest a few dozen levels at most
_CHECK_DEPTH_FROM = 256  # containers in a body before its depth is worth measuring


def loads(raw: bytes | str):
    """The JSON value of `raw`; ValueError for what is not clean JSON, RecursionError for deep nesting."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # strict: raw surrogate bytes fail
    value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    if "\\u" in text and _has_lone_surrogate(value):
        raise ValueError("a string holds a lone surrogate, which is not text")
    if text.count("[") + text.count("{") > _CHECK_DEPTH_FROM and _depth(value) > MAX_DEPTH:
        raise RecursionError(f"nested more than {MAX_DEPTH} deep")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal} is too large for a number")
    return value


def _strings_and_containers(value):
    """Every container and string in `value`, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            yield item
            stack.extend(item)
        elif isinstance(item, str):
            yield item


def _has_lone_surrogate(value) -> bool:
    for item in _strings_and_containers(value):
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _depth(value) -> int:
    """How deep containers nest in `value`, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
