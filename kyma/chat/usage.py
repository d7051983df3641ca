"""Usage of a served attempt: read from the upstream, or counted by the gateway when it sent none."""

from __future__ import annotations

import json
from dataclasses import dataclass

from kyma import tokens
from kyma.services.catalog import ModelInfo
from kyma.services.pricing import Cost, TokenUsage, cost_of


@dataclass(frozen=True)
class Metered:
    """Token usage, its cost, and whether the gateway had to estimate it."""

    usage: TokenUsage
    cost: Cost
    estimated: bool
    upstream: dict  # the upstream's usage object, for detail fields we pass through


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def meter(model: ModelInfo, upstream_usage: dict | None, prompt_estimate: int, completion_text: str) -> Metered:
    """Usage from the upstream's report when it has one, else from the gateway's own count."""
    u = upstream_usage if isinstance(upstream_usage, dict) else {}
    estimated = not (isinstance(u.get("prompt_tokens"), int) and isinstance(u.get("completion_tokens"), int))
    if estimated:
        usage = TokenUsage(prompt_estimate, tokens.count_text(completion_text))
    else:
        details = u.get("prompt_tokens_details") if isinstance(u.get("prompt_tokens_details"), dict) else {}
        prompt = _int(u["prompt_tokens"])
        cached = min(prompt, _int(details.get("cached_tokens") or u.get("cached_tokens")))
        writes = _int(details.get("cache_write_tokens") or u.get("cache_write_tokens"))
        usage = TokenUsage(prompt, _int(u["completion_tokens"]), cached, writes)
    return Metered(usage, cost_of(model, usage), estimated, u)


def meter_input(model: ModelInfo, upstream_usage: dict | None, input_estimate: int) -> Metered:
    """Usage of an input-only API (embeddings): the upstream's prompt_tokens, else the gateway's count."""
    u = upstream_usage if isinstance(upstream_usage, dict) else {}
    prompt = u.get("prompt_tokens")
    estimated = not isinstance(prompt, int) or isinstance(prompt, bool) or prompt < 0
    usage = TokenUsage(input_estimate if estimated else prompt, 0)
    return Metered(usage, cost_of(model, usage), estimated, u)


def input_usage_object(m: Metered) -> dict:
    """The `usage` of an input-only API: prompt and total tokens plus Kyma's cost and cache fields."""
    out = {"prompt_tokens": m.usage.prompt_tokens, "total_tokens": m.usage.total_tokens,
           "cached_tokens": 0, "cache_write_tokens": 0, "cost": m.cost.cost_usd, "cache_discount": m.cost.discount_usd}
    if m.estimated:
        out["estimated"] = True
    return out


def usage_object(m: Metered) -> dict:
    """The `usage` object every response carries: OpenAI fields plus Kyma's cost and cache fields."""
    u = m.usage
    details = dict(m.upstream.get("prompt_tokens_details") or {}) if isinstance(
        m.upstream.get("prompt_tokens_details"), dict) else {}
    details["cached_tokens"] = u.cached_tokens
    out = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": details,
    }
    if isinstance(m.upstream.get("completion_tokens_details"), dict):
        out["completion_tokens_details"] = m.upstream["completion_tokens_details"]
    out.update(cached_tokens=u.cached_tokens, cache_write_tokens=u.cache_write_tokens,
               cost=m.cost.cost_usd, cache_discount=m.cost.discount_usd)
    if m.estimated:
        out["estimated"] = True
    return out


def completion_text(message: dict) -> str:
    """The text a completion produced (content, reasoning, tool calls), for estimating tokens."""
    parts = [message.get("content"), message.get("reasoning_content"), message.get("reasoning")]
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            parts += [fn.get("name"), fn.get("arguments")]
    return "".join(p if isinstance(p, str) else json.dumps(p) for p in parts if p is not None)
