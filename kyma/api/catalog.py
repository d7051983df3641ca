"""Model catalog endpoints: GET /v1/models (with the seed's filters) and GET /v1/models/{id}."""

from __future__ import annotations

import math

from flask import jsonify, request

from kyma.api import api_bp
from kyma.errors import InvalidRequest, NotFound
from kyma.runtime import runtime
from kyma.translate.anthropic import anthropic_model, anthropic_page, claude_names, map_claude_model
from kyma.services.catalog import (CHAT, COST_TIERS, KINDS, LATENCY_TIERS, QUALITY_TIERS, RECOMMENDED_FOR,
                                   ModelFilter, filter_models)

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def query_bool(name: str) -> bool | None:
    """A boolean query parameter (true/false/1/0/yes/no), None when absent; anything else is a 400."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise InvalidRequest(f"'{name}' must be true or false, not {raw!r}.", param=name, code="invalid_parameter")


def query_choice(name: str, choices: tuple[str, ...]) -> str | None:
    """A query parameter restricted to `choices`, None when absent; a 400 lists the valid values."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise InvalidRequest(f"'{name}' must be one of {', '.join(choices)}; got {raw!r}.", param=name,
                             code="invalid_parameter")
    return raw


def query_number(name: str, *, integer: bool = False) -> float | int | None:
    """A finite numeric query parameter, None when absent; integers may be written as 4096 or 4096.0."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    kind = "an integer" if integer else "a number"
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be {kind}, not {raw!r}.", param=name,
                             code="invalid_parameter") from None
    if not math.isfinite(value) or (integer and not value.is_integer()):
        raise InvalidRequest(f"'{name}' must be {kind}, not {raw!r}.", param=name, code="invalid_parameter")
    return int(value) if integer else value


def _recommended_for() -> tuple[str, ...]:
    raw = request.args.get("recommended_for", "")
    tags = tuple(raw.split(",")) if raw else ()
    unknown = [t for t in tags if t not in RECOMMENDED_FOR]
    if unknown:
        raise InvalidRequest(f"'recommended_for' has unknown value(s) {', '.join(map(repr, unknown))}; valid: "
                             f"{', '.join(RECOMMENDED_FOR)}.", param="recommended_for", code="invalid_parameter")
    return tags


def _model_filter() -> ModelFilter:
    return ModelFilter(
        recommended_for=_recommended_for(),
        tools=query_bool("tools"), vision=query_bool("vision"), reasoning=query_bool("reasoning"),
        structured_outputs=query_bool("structured_outputs"),
        latency_tier=query_choice("latency_tier", LATENCY_TIERS),
        cost_tier=query_choice("cost_tier", COST_TIERS),
        quality_tier=query_choice("quality_tier", QUALITY_TIERS),
        min_context_window=query_number("min_context_window", integer=True),
        max_input_price=query_number("max_input_price"),
        kind=_kind(),
    )


def _kind() -> str | None:
    """`kind`: chat (the default, what agents and chat clients list), embedding, or all (None)."""
    kind = query_choice("kind", (*KINDS, "all")) or CHAT
    return None if kind == "all" else kind


def _wants_anthropic_shape() -> bool:
    """The Anthropic SDKs send anthropic-version on every request, model listing included."""
    return "anthropic-version" in request.headers


@api_bp.get("/models")
def list_models():
    """The catalog in OpenAI's list shape plus the alias map (filters combine with AND); for an
    Anthropic client, the claude-* names the gateway accepts, in Anthropic's paged list shape."""
    rt = runtime()
    if _wants_anthropic_shape():
        limit = query_number("limit", integer=True)
        if limit is not None and not 1 <= limit <= 1000:
            raise InvalidRequest("'limit' must be an integer from 1 to 1000.", param="limit", code="invalid_parameter")
        return jsonify(anthropic_page([_claude_model(n) for n in claude_names(rt.claude_models)],
                                      limit=limit or 20, after_id=request.args.get("after_id"),
                                      before_id=request.args.get("before_id")))
    catalog = rt.catalog
    models = filter_models(catalog, _model_filter())
    return jsonify({"object": "list", "data": [m.api for m in models], "aliases": catalog.aliases,
                    "default_model": catalog.default_model})


@api_bp.get("/models/<path:model_id>")
def get_model(model_id: str):
    """One model by id or alias, or by a claude-* name the gateway accepts (which says what it maps
    to); in Anthropic's shape for an Anthropic client. 404 model_not_found otherwise."""
    rt = runtime()
    claude = model_id.lower().startswith("claude") and rt.catalog.get(model_id) is None
    if _wants_anthropic_shape():
        if not claude:
            raise NotFound(f"The model '{model_id}' does not exist; GET /v1/models lists the claude-* names "
                           "this gateway accepts.", code="model_not_found", param="model")
        return jsonify(_claude_model(model_id))
    mapped = map_claude_model(model_id, rt.claude_models, rt.catalog) if claude else model_id
    model, alias = rt.catalog.resolve(mapped)
    body = dict(model.api)
    if claude:
        alias = model_id
    if alias:
        body["alias"] = alias
    return jsonify(body)


def _claude_model(name: str) -> dict:
    rt = runtime()
    served_by, _ = rt.catalog.resolve(map_claude_model(name, rt.claude_models, rt.catalog))
    return anthropic_model(name, served_by.api)

