"""Deterministic JSON values that validate against a JSON schema (tool arguments, json_schema).

Covers what tool and structured-output schemas use in practice: type (and type lists), enum,
const, default/examples, properties/required, items/prefixItems, min/max bounds, string
formats, anyOf/oneOf/allOf and local $ref (pydantic puts nested models under $defs).
`hints` maps property names to values taken from the prompt; they are used when they fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_DEPTH = 6
_FORMATS = {
    "date": "2026-01-15", "date-time": "2026-01-15T12:00:00Z", "time": "12:00:00",
    "email": "user@example.com", "uri": "https://example.com/", "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000", "ipv4": "127.0.0.1", "hostname": "example.com",
}


@dataclass
class SchemaFiller:
    """Builds one value for a schema; `root` resolves `#/...` references."""

    root: dict
    hints: dict = field(default_factory=dict)

    def value(self, schema, name: str = "value", depth: int = 0):
        """A value valid against `schema`."""
        if not isinstance(schema, dict):
            return "sample"
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return self._from_enum(schema["enum"], name)
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                options = [self._resolve(s) for s in schema[key]]
                # Prefer a non-null branch: a null is valid but says nothing.
                chosen = next((s for s in options if s.get("type") != "null"), options[0])
                return self.value(chosen, name, depth + 1)
        if schema.get("allOf"):
            merged: dict = {}
            for part in schema["allOf"]:
                merged = _merge(merged, self._resolve(part))
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return self.value(_merge(merged, rest), name, depth + 1)
        kind = self._type_of(schema)
        make = getattr(self, f"_{kind}", self._string)
        return make(schema, name, depth)

    def _resolve(self, schema: dict) -> dict:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 20:
            ref = schema["$ref"]
            target = self.root
            for part in ref.lstrip("#/").split("/") if ref.startswith("#") else []:
                target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest}
            seen += 1
        return schema

    def _type_of(self, schema: dict) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind:
            return kind
        if "properties" in schema:
            return "object"
        if "items" in schema:
            return "array"
        return "string"

    def _from_enum(self, values: list, name: str):
        hint = self.hints.get(name.lower())
        for v in values:
            if isinstance(v, str) and hint is not None and v.lower() == str(hint).lower():
                return v
        return values[0]

    def _object(self, schema: dict, name: str, depth: int) -> dict:
        props = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        out = {}
        for key, sub in props.items():
            # Deep in a recursive schema, fill only what is required so generation ends.
            if depth >= MAX_DEPTH and key not in required:
                continue
            out[key] = self.value(sub, key, depth + 1)
        for key in required - out.keys():
            out[key] = "sample"
        return out

    def _array(self, schema: dict, name: str, depth: int) -> list:
        lo = int(schema.get("minItems") or 0)
        hi = schema.get("maxItems")
        prefix = schema.get("prefixItems") or []
        count = max(lo, len(prefix), 0 if depth >= MAX_DEPTH else 1)
        if hi is not None:
            count = min(count, int(hi))
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        out = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            out.append(self.value(sub, name, depth + 1))
        if schema.get("uniqueItems") and len({repr(v) for v in out}) < len(out):
            out = out[:1]
        return out

    def _string(self, schema: dict, name: str, depth: int) -> str:
        hint = self.hints.get(name.lower())
        if isinstance(hint, str) and "format" not in schema and "pattern" not in schema:
            text = hint
        elif "default" in schema and isinstance(schema["default"], str):
            text = schema["default"]
        elif schema.get("examples") and isinstance(schema["examples"][0], str):
            text = schema["examples"][0]
        else:
            text = _FORMATS.get(schema.get("format", ""), f"sample {name}".strip())
        lo, hi = schema.get("minLength"), schema.get("maxLength")
        if lo is not None and len(text) < int(lo):
            text = text + "x" * (int(lo) - len(text))
        if hi is not None:
            text = text[: int(hi)]
        return text

    def _integer(self, schema: dict, name: str, depth: int) -> int:
        return int(self._number(schema, name, depth, integer=True))

    def _number(self, schema: dict, name: str, depth: int, integer: bool = False):
        hint = self.hints.get(name.lower())
        value = _as_number(hint)
        if value is None:
            value = schema.get("default") if isinstance(schema.get("default"), (int, float)) else 1
        lo = schema.get("minimum")
        hi = schema.get("maximum")
        if schema.get("exclusiveMinimum") is not None and not isinstance(schema["exclusiveMinimum"], bool):
            lo = schema["exclusiveMinimum"] + (1 if integer else 0.5)
        if schema.get("exclusiveMaximum") is not None and not isinstance(schema["exclusiveMaximum"], bool):
            hi = schema["exclusiveMaximum"] - (1 if integer else 0.5)
        if lo is not None and value < lo:
            value = lo
        if hi is not None and value > hi:
            value = hi
        step = schema.get("multipleOf")
        if isinstance(step, (int, float)) and step > 0:
            value = math.ceil(value / step) * step  # the first multiple at or above the bound
            if hi is not None and value > hi:
                value = math.floor(hi / step) * step
        return int(value) if integer else value

    def _boolean(self, schema: dict, name: str, depth: int) -> bool:
        hint = self.hints.get(name.lower())
        return hint.lower() in ("true", "yes", "1") if isinstance(hint, str) else True

    def _null(self, schema: dict, name: str, depth: int) -> None:
        return None


def _as_number(text):
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return text
    try:
        return float(text) if "." in str(text) else int(text)
    except (TypeError, ValueError):
        return None


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if k == "properties":
            out[k] = {**out.get(k, {}), **v}
        elif k == "required":
            out[k] = sorted(set(out.get(k, [])) | set(v))
        else:
            out[k] = v
    return out


def value_for_schema(schema: dict, hints: dict | None = None):
    """A deterministic value that validates against `schema`, using prompt `hints` by property name."""
    return SchemaFiller(root=schema or {}, hints={k.lower(): v for k, v in (hints or {}).items()}).value(
        schema or {"type": "object"})
