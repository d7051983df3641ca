"""What a client needs to configure itself: config, capabilities, pricing and llms.txt, from the catalog."""

from __future__ import annotations

from dataclasses import dataclass

from kyma.services.catalog import Catalog, ModelInfo
from kyma.services.recommend import AGENT_IDS


@dataclass(frozen=True)
class Endpoint:
    """One public endpoint of the gateway."""

    method: str
    path: str
    auth: bool
    summary: str


ENDPOINTS = (
    Endpoint("POST", "/v1/chat/completions", True, "OpenAI chat completions (streaming, tools, JSON mode)"),
    Endpoint("POST", "/v1/completions", True, "OpenAI legacy completions (prompt, suffix for fill-in-the-middle)"),
    Endpoint("POST", "/v1/embeddings", True, "OpenAI embeddings (embedding models: GET /v1/models?kind=embedding)"),
    Endpoint("POST", "/v1/messages", True, "Anthropic Messages (streaming, tools)"),
    Endpoint("POST", "/v1/messages/count_tokens", True, "Anthropic token counting"),
    Endpoint("POST", "/v1/responses", True, "OpenAI Responses (streaming, function tools, previous_response_id)"),
    Endpoint("GET", "/v1/responses/{response_id}", True, "A stored response"),
    Endpoint("GET", "/v1/responses/{response_id}/input_items", True, "A stored response's input items, paged"),
    Endpoint("DELETE", "/v1/responses/{response_id}", True, "Delete a stored response"),
    Endpoint("GET", "/v1/models", False, "Model catalog with filters and aliases (kind=embedding, kind=all)"),
    Endpoint("GET", "/v1/models/{model_id}", False, "One model by id or alias"),
    Endpoint("GET", "/v1/models/recommend", False, "Model recommendation and agent config"),
    Endpoint("GET", "/v1/models/uptime", False, "7-day per-model uptime from real traffic"),
    Endpoint("GET", "/v1/config", False, "Auto-configuration for agents"),
    Endpoint("GET", "/v1/capabilities", False, "Features and the models that support each"),
    Endpoint("GET", "/v1/pricing", False, "Pricing catalog"),
    Endpoint("GET", "/v1/credits/pricing", False, "Pricing catalog (older path)"),
    Endpoint("GET", "/v1/credits/balance", True, "Credit balance"),
    Endpoint("GET", "/v1/limits/tiers", False, "Rate-limit tier ladder"),
    Endpoint("GET", "/v1/auth/limits", True, "Your tier, limits and usage"),
    Endpoint("POST", "/v1/auth/register", False, "Create an account; returns an API key"),
    Endpoint("POST", "/v1/auth/login", False, "Sign in; returns a session token"),
    Endpoint("POST", "/v1/auth/logout", True, "End the session"),
    Endpoint("GET", "/v1/auth/me", True, "Your account"),
    Endpoint("POST", "/v1/auth/device/code", False, "Start a device-code log-in (CLIs)"),
    Endpoint("POST", "/v1/auth/device/token", False, "Poll a device-code log-in; the new API key once approved"),
    Endpoint("GET", "/v1/auth/keys", True, "Your API keys (masked)"),
    Endpoint("POST", "/v1/auth/keys", True, "Create an API key (shown once)"),
    Endpoint("DELETE", "/v1/auth/keys/{key_id}", True, "Revoke an API key"),
    Endpoint("GET", "/v1/status", False, "Service status from recent traffic"),
    Endpoint("GET", "/v1/openapi.json", False, "This API's OpenAPI contract"),
    Endpoint("GET", "/llms.txt", False, "Plain-text guide for agents"),
    Endpoint("GET", "/healthz", False, "Liveness and database check"),
)

AUTH = {"header": "Authorization", "scheme": "Bearer", "alternative_header": "x-api-key",
        "key_prefixes": ["ky-", "ks-"], "public_endpoints_need_no_key": True}

FALLBACK_LAYERS = [
    {"layer": 1, "description": "same model, another provider route"},
    {"layer": 2, "description": "a sibling model of the same family"},
    {"layer": 3, "description": "a different model of comparable class"},
]


def _ids(models, predicate) -> list[str]:
    return [m.id for m in models if predicate(m)]


def recommended_models(catalog: Catalog) -> dict[str, str]:
    """alias → model id: the catalog's own pick per job."""
    return dict(catalog.aliases)


def gateway_config(catalog: Catalog, origin: str, *, simulated: bool | None) -> dict:
    """GET /v1/config: base URLs, default model, aliases, auth forms and endpoints."""
    root = origin.rstrip("/")
    return {
        "object": "config",
        "base_url": f"{root}/v1",
        "anthropic_base_url": root,
        "format": "openai",
        "formats": ["openai", "anthropic"],
        "streaming": True,
        "default_model": catalog.default_model,
        "aliases": dict(catalog.aliases),
        "recommended_models": recommended_models(catalog),
        "models": [m.id for m in catalog.models],
        "auth": AUTH,
        "endpoints": [{"method": e.method, "path": e.path, "auth": e.auth, "summary": e.summary}
                      for e in ENDPOINTS],
        "docs": {"openapi": f"{root}/v1/openapi.json", "llms_txt": f"{root}/llms.txt"},
        "dashboard": f"{root}/dashboard",
        "simulated_providers": simulated,
        "sdk": {"openai": {"base_url": f"{root}/v1"}, "anthropic": {"base_url": root}},
    }


def capabilities(catalog: Catalog) -> dict:
    """GET /v1/capabilities: each feature and the models that support it."""
    models = catalog.models
    everyone = [m.id for m in models]

    def feature(ids: list[str], **extra) -> dict:
        return {"supported": bool(ids), "models": ids, **extra}

    return {
        "object": "capabilities",
        "model_count": len(models),
        "features": {
            "streaming": feature(everyone, format="server-sent events"),
            "tools": feature(_ids(models, lambda m: m.supports_tools)),
            "vision": feature(_ids(models, lambda m: m.supports_vision)),
            "json_mode": feature(_ids(models, lambda m: m.supports_structured_outputs),
                                 response_format=["json_object"]),
            "json_schema": feature(_ids(models, lambda m: m.supports_structured_outputs),
                                   response_format=["json_schema"]),
            "reasoning": feature(_ids(models, lambda m: m.supports_reasoning)),
            "prompt_caching": feature(_ids(models, lambda m: m.supports_caching), automatic=True,
                                      cached_input_discount=0.9),
            "anthropic_messages": feature(everyone, endpoint="/v1/messages"),
            "openai_responses": feature(everyone, endpoint="/v1/responses"),
            "aliases": feature(everyone, aliases=dict(catalog.aliases)),
            "fallback": feature(everyone, layers=FALLBACK_LAYERS),
            "usage_in_every_response": feature(everyone, fields=["cached_tokens", "cost", "cache_discount"]),
        },
        "limits": {"gateway_output_limit": None, "max_tokens_passthrough": True,
                   "max_context_window": max(m.context_window for m in models)},
        "pricing_model": {"unit": "USD per 1M tokens", "billing": "prepaid credits, per token",
                          "cached_input": "10% of the input price"},
        "compatibility": {"openai_sdk": True, "anthropic_sdk": True, "openrouter_models_field": True},
    }


def pricing_row(m: ModelInfo) -> dict:
    """One text-model row of the pricing catalog."""
    return {"id": m.id, "name": m.name, "input_per_1m": m.pricing.input_per_1m,
            "output_per_1m": m.pricing.output_per_1m, "cached_input_per_1m": m.pricing.cached_input_per_1m}


def pricing_catalog(catalog: Catalog) -> dict:
    """GET /v1/pricing: the documented `pricing.catalog` shape, rows sorted by id."""
    text = [pricing_row(m) for m in sorted(catalog.models, key=lambda m: m.id)]
    return {"object": "pricing.catalog", "currency": "USD", "unit": "per_1m_tokens",
            "text_count": len(text), "media_count": 0, "text": text, "media": []}


def llms_txt(catalog: Catalog, origin: str) -> str:
    """/llms.txt: a plain-text guide for agents, generated from the catalog."""
    root = origin.rstrip("/")
    lines = [
        "# Kyma gateway",
        "",
        "> An OpenAI- and Anthropic-compatible LLM API gateway: one endpoint in front of "
        f"{len(catalog.models)} open-weight models, each served by several providers with automatic failover, "
        "prepaid credits and per-tier rate limits.",
        "",
        "## Base URLs",
        f"- OpenAI SDK / OpenAI-compatible agents: {root}/v1",
        f"- Anthropic SDK / Claude Code (ANTHROPIC_BASE_URL): {root}",
        f"- Codex CLI (a model provider with wire_api = \"responses\"): {root}/v1",
        "- Auth: `Authorization: Bearer ky-…` (or `x-api-key`). Get a key: POST /v1/auth/register.",
        f"- Default model: {catalog.default_model}",
        "",
        "## Endpoints",
        *(f"- {e.method} {e.path}{' (auth)' if e.auth else ''}: {e.summary}" for e in ENDPOINTS),
        "",
        "## Aliases",
        *(f"- {alias} → {target}" for alias, target in catalog.aliases.items()),
        "",
        "## Models",
        *(f"- {m.id}: {m.name}; context {m.context_window}, max output {m.max_output_tokens}; "
          f"${m.pricing.input_per_1m}/${m.pricing.output_per_1m} per 1M in/out; "
          f"tools {'yes' if m.supports_tools else 'no'}, vision {'yes' if m.supports_vision else 'no'}; "
          f"{m.api.get('best_for', '')}" for m in catalog.models),
        "",
        "## Embedding models (POST /v1/embeddings)",
        *(f"- {m.id}: {m.name}; {m.dimensions} dimensions"
          f"{f' (truncatable to {m.min_dimensions})' if m.min_dimensions else ''}; inputs up to "
          f"{m.context_window} tokens; ${m.pricing.input_per_1m} per 1M input tokens" for m in catalog.embeddings),
        "",
        "## More",
        f"- OpenAPI: {root}/v1/openapi.json",
        f"- Agent config: {root}/v1/models/recommend?agent=<agent>, for {', '.join(AGENT_IDS)}",
    ]
    return "\n".join(lines) + "\n"
