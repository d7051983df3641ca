"""Cost of a request in integer micro-dollars, from catalog prices and token usage."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from kyma.services.catalog import ModelInfo

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


def _micros(tokens: int, usd_per_1m: float) -> Decimal:
    # USD per 1M tokens equals micro-dollars per token: exact decimal arithmetic, no float drift.
    return Decimal(tokens) * Decimal(str(usd_per_1m))


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def cost_of(model: ModelInfo, usage: TokenUsage) -> Cost:
    """Cost of a served request: uncached input, cached input (10%), output; rounded once, half up."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    uncached = usage.prompt_tokens - cached
    p = model.pricing
    exact = _micros(uncached, p.input_per_1m) + _micros(cached, p.cached_input_per_1m) \
        + _micros(usage.completion_tokens, p.output_per_1m)
    full = _micros(usage.prompt_tokens, p.input_per_1m) + _micros(usage.completion_tokens, p.output_per_1m)
    cost = _round(exact)
    return Cost(cost, max(0, _round(full) - cost))


def worst_case_micros(model: ModelInfo, prompt_tokens: int, max_tokens: int) -> int:
    """The most a request can cost: every prompt token uncached and max_tokens of output."""
    return _round(_micros(prompt_tokens, model.pricing.input_per_1m) + _micros(max_tokens, model.pricing.output_per_1m))


def micros_to_usd(micros: int) -> float:
    """Micro-dollars as a USD float for JSON (exact to 6 decimals)."""
    return round(micros / MICROS_PER_USD, 6)


def usd_to_micros(usd) -> int:
    """A USD amount (str, int, float or Decimal) as integer micro-dollars, rounded half up."""
    return _round(Decimal(str(usd)) * MICROS_PER_USD)
