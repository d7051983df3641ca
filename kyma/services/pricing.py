"""Cost of a request in integer micro-dollars, from catalog prices and token usage."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from kyma.services.catalog import PRICE_SCALE, ModelInfo, scaled_price

MICROS_PER_USD = 1_000_000


@dataclass(frozen=True)
class TokenUsage:
    """Tokens of one served attempt. prompt_tokens includes cached_tokens (OpenAI convention)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Cost:
    """What a request costs and what caching saved, both in micro-dollars."""

    cost_micros: int
    discount_micros: int

    @property
    def cost_usd(self) -> float:
        return micros_to_usd(self.cost_micros)

    @property
    def discount_usd(self) -> float:
        return micros_to_usd(self.discount_micros)


# Prices become integer nano-micro-dollars per token (USD per 1M tokens = micro-dollars per token),
# exact because the catalog refuses a price with more decimals when it loads.
_scaled = functools.lru_cache(maxsize=1024)(scaled_price)


def _round(scaled_total: int) -> int:
    """Scaled micro-dollars to whole micro-dollars, half up (totals are never negative)."""
    return (scaled_total + PRICE_SCALE // 2) // PRICE_SCALE


def cost_of(model: ModelInfo, usage: TokenUsage) -> Cost:
    """Cost of a served request: uncached input, cached input (10%), output; rounded once, half up.

    Integer arithmetic on exactly scaled prices: the same result as exact decimals, without
    Decimal's cost on the request path.
    """
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    uncached = usage.prompt_tokens - cached
    p = model.pricing
    inp, out = _scaled(p.input_per_1m), _scaled(p.output_per_1m)
    output = usage.completion_tokens * out
    cost = _round(uncached * inp + cached * _scaled(p.cached_input_per_1m) + output)
    full = _round(usage.prompt_tokens * inp + output)
    return Cost(cost, max(0, full - cost))


def worst_case_micros(model: ModelInfo, prompt_tokens: int, max_tokens: int) -> int:
    """The most a request can cost: every prompt token uncached and max_tokens of output."""
    p = model.pricing
    return _round(prompt_tokens * _scaled(p.input_per_1m) + max_tokens * _scaled(p.output_per_1m))


def micros_to_usd(micros: int) -> float:
    """Micro-dollars as a USD float for JSON (exact to 6 decimals)."""
    return round(micros / MICROS_PER_USD, 6)


def usd_to_micros(usd) -> int:
    """A USD amount (str, int, float or Decimal) as integer micro-dollars, rounded half up."""
    return int((Decimal(str(usd)) * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))
