"""claude-* model names (as Claude Code sends them) → catalog models, through operator configuration."""

from __future__ import annotations

import re

# Dated snapshots ("-20250929"), "-latest" and Claude Code's context suffix ("[1m]") name the same model.
_SUFFIX = re.compile(r"(\[[^\]]*\]|-latest|-\d{8})$")


def map_claude_model(name: str, mapping: dict, catalog) -> str:
    """The model to run for a requested name: catalog ids and aliases pass through, claude-* names map.

    A claude-* name is looked up exactly, then without its date/"-latest"/"[1m]" suffix, then by the
    longest configured name it starts with, then by the family it names (opus, sonnet, haiku), then
    falls back to mapping["default"] (or the catalog's default model). Other unknown names pass
    through so the pipeline answers 404 for them.
    """
    if catalog.get(name) is not None or not name.lower().startswith("claude"):
        return name
    key = name.lower()
    names = {k.lower(): v for k, v in mapping.items() if k != "default" and isinstance(v, str)}
    while True:
        if key in names:
            return names[key]
        shorter = _SUFFIX.sub("", key)
        if shorter == key:
            break
        key = shorter
    prefixes = [k for k in names if key.startswith(k)]
    if prefixes:
        return names[max(prefixes, key=len)]
    for family in ("opus", "sonnet", "haiku"):  # a release named another way round: by its family
        if family in key and f"claude-{family}" in names:
            return names[f"claude-{family}"]
    default = mapping.get("default")
    return default if isinstance(default, str) and default else catalog.default_model
