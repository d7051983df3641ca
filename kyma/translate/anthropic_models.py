"""claude-* model names (as Claude Code sends them) → catalog models, through operator configuration."""

from __future__ import annotations

import re
from datetime import datetime, timezone

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


def capable_model(name: str, catalog, request: dict) -> str:
    """The model a claude-* name mapped to, or the closest one that has what the (translated) request uses.

    A claude-* name promises images and tools, so a request using them moves to a chat model that
    has them: the mapped model's family first, then its cost tier, then the nearest price.
    """
    vision = any(isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
                 for m in request.get("messages", ()))
    tools = bool(request.get("tools"))
    model = catalog.get(name)
    if model is None or _has(model, vision, tools):
        return name
    price = model.pricing.input_per_1m + model.pricing.output_per_1m
    able = [m for m in catalog.models if _has(m, vision, tools)]
    if not able:
        return name  # the pipeline then says which capability is missing
    best = min(able, key=lambda m: (m.family != model.family, m.cost_tier != model.cost_tier,
                                    abs(m.pricing.input_per_1m + m.pricing.output_per_1m - price)))
    return best.id


def _has(model, vision: bool, tools: bool) -> bool:
    return (model.supports_vision or not vision) and (model.supports_tools or not tools)


def claude_names(mapping: dict) -> list[str]:
    """The claude-* names the mapping lists, in its order (the keys an Anthropic client may pick)."""
    return [k for k, v in mapping.items() if k != "default" and k.lower().startswith("claude") and isinstance(v, str)]


def display_name(name: str) -> str:
    """'claude-sonnet-4-5' → 'Claude Sonnet 4.5', as Anthropic names its models."""
    words, version = [], []
    for part in name.split("-"):
        (version if part.isdigit() else words).append(part)
    title = " ".join(w.capitalize() for w in words)
    return f"{title} {'.'.join(version)}".strip()


def anthropic_model(name: str, served_by: dict) -> dict:
    """One claude-* name in Anthropic's model shape, and the catalog model it runs on (`kyma.maps_to`)."""
    created = datetime.fromtimestamp(int(served_by.get("created") or 0), timezone.utc)
    return {"type": "model", "id": name, "display_name": display_name(name),
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"), "kyma": {"maps_to": served_by["id"]}}


def anthropic_page(items: list[dict], *, limit: int, after_id: str | None, before_id: str | None) -> dict:
    """Anthropic's list shape: one page of `items`, after or before an id, with its paging fields."""
    ids = [m["id"] for m in items]
    if after_id is not None:
        items = items[ids.index(after_id) + 1:] if after_id in ids else []
        page, more = items[:limit], len(items) > limit
    elif before_id is not None:
        items = items[:ids.index(before_id)] if before_id in ids else []
        page, more = items[-limit:], len(items) > limit
    else:
        page, more = items[:limit], len(items) > limit
    return {"data": page, "has_more": more, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None}
