"""The models page's filter controls, parsed leniently into the catalog's ModelFilter."""

from __future__ import annotations

from kyma.services.catalog import (COST_TIERS, LATENCY_TIERS, QUALITY_TIERS, RECOMMENDED_FOR, ModelFilter)

CHOICES = {"latency_tier": LATENCY_TIERS, "cost_tier": COST_TIERS, "quality_tier": QUALITY_TIERS,
           "recommended_for": RECOMMENDED_FOR}
FLAGS = ("tools", "vision", "reasoning", "structured_outputs")


def _flag(args, name: str) -> bool | None:
    value = (args.get(name) or "").lower()
    return {"true": True, "1": True, "on": True, "false": False, "0": False}.get(value)


def _number(args, name: str, kind):
    try:
        return kind(args[name]) if args.get(name) else None
    except ValueError:  # a half-typed number in a form control just leaves the filter off
        return None


def _choice(args, name: str) -> str | None:
    value = args.get(name) or None
    return value if value in CHOICES[name] else None


def filter_from_args(args) -> ModelFilter:
    """The same filters /v1/models takes; unknown or malformed values switch a filter off, not 400."""
    use = _choice(args, "recommended_for")
    return ModelFilter(
        recommended_for=(use,) if use else (),
        tools=_flag(args, "tools"), vision=_flag(args, "vision"), reasoning=_flag(args, "reasoning"),
        structured_outputs=_flag(args, "structured_outputs"),
        latency_tier=_choice(args, "latency_tier"), cost_tier=_choice(args, "cost_tier"),
        quality_tier=_choice(args, "quality_tier"),
        min_context_window=_number(args, "min_context_window", int),
        max_input_price=_number(args, "max_input_price", float),
    )
