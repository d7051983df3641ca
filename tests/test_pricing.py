"""Property tests for pricing and rounding: integer micros, monotone, exact."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from kyma.services.catalog import ModelInfo, Pricing
from kyma.services.pricing import TokenUsage, cost_of, micros_to_usd, usd_to_micros, worst_case_micros

# Prices as the catalog writes them: USD per 1M tokens with at most 6 decimals.
prices = st.decimals(min_value=0, max_value=100, places=6, allow_nan=False, allow_infinity=False).map(float)
tokens = st.integers(min_value=0, max_value=10_000_000)


def model(inp: float, out: float, cached: float | None = None) -> ModelInfo:
    pricing = Pricing(inp, out, round(inp * 0.1, 6) if cached is None else cached)
    return ModelInfo(id="m", name="m", family="f", context_window=1, max_output_tokens=1, supports_tools=True,
                     supports_vision=False, supports_reasoning=False, supports_structured_outputs=False,
                     supports_caching=True, cost_tier="balanced", latency_tier="fast", quality_tier="high",
                     pricing=pricing, api={})


@st.composite
def usages(draw):
    prompt = draw(tokens)
    return TokenUsage(prompt_tokens=prompt, completion_tokens=draw(tokens),
                      cached_tokens=draw(st.integers(0, prompt)))


@given(prices, prices, usages())
def test_cost_is_an_exact_integer(inp, out, usage):
    cost = cost_of(model(inp, out), usage)
    assert type(cost.cost_micros) is int and type(cost.discount_micros) is int
    assert cost.cost_micros >= 0 and cost.discount_micros >= 0
    # USD per 1M tokens == micro-dollars per token, so the exact cost is a decimal product.
    p = model(inp, out).pricing
    exact = ((usage.prompt_tokens - usage.cached_tokens) * Decimal(str(p.input_per_1m))
             + usage.cached_tokens * Decimal(str(p.cached_input_per_1m))
             + usage.completion_tokens * Decimal(str(p.output_per_1m)))
    assert abs(cost.cost_micros - exact) <= Decimal("0.5")


@given(prices, prices, usages(), st.integers(0, 1000), st.integers(0, 1000))
def test_cost_is_monotonic_in_tokens(inp, out, usage, more_prompt, more_output):
    m = model(inp, out)
    bigger = TokenUsage(usage.prompt_tokens + more_prompt, usage.completion_tokens + more_output,
                        usage.cached_tokens)
    assert cost_of(m, bigger).cost_micros >= cost_of(m, usage).cost_micros


@given(prices, prices, usages())
def test_cached_tokens_never_cost_more(inp, out, usage):
    m = model(inp, out)
    uncached = TokenUsage(usage.prompt_tokens, usage.completion_tokens, 0)
    assert cost_of(m, usage).cost_micros <= cost_of(m, uncached).cost_micros
    # ...and the discount is exactly what caching saved.
    assert cost_of(m, usage).cost_micros + cost_of(m, usage).discount_micros == cost_of(m, uncached).cost_micros


@given(prices, prices, usages())
def test_worst_case_bounds_the_actual_cost(inp, out, usage):
    m = model(inp, out)
    hold = worst_case_micros(m, usage.prompt_tokens, usage.completion_tokens)
    assert cost_of(m, usage).cost_micros <= hold


@given(prices, prices, usages())
def test_recomputing_from_stored_usage_reproduces_the_charge(inp, out, usage):
    m = model(inp, out)
    stored = TokenUsage(**{f: getattr(usage, f) for f in ("prompt_tokens", "completion_tokens", "cached_tokens")})
    assert cost_of(m, stored) == cost_of(m, usage)


@given(st.integers(min_value=-10**15, max_value=10**15))
def test_micros_usd_round_trip(micros):
    assert usd_to_micros(micros_to_usd(micros)) == micros


@given(st.decimals(min_value=-10**9, max_value=10**9, places=6, allow_nan=False, allow_infinity=False))
def test_usd_strings_convert_exactly(usd):
    assert usd_to_micros(str(usd)) == int(usd * 1_000_000)


def test_rounding_is_half_up_once_per_request():
    m = model(0.5, 0.5)  # 0.5 micro-dollars per token
    assert cost_of(m, TokenUsage(1, 0)).cost_micros == 1  # 0.5 → 1 (half up)
    assert cost_of(m, TokenUsage(1, 1)).cost_micros == 1  # rounded once on the total, not per part
    assert cost_of(m, TokenUsage(3, 0)).cost_micros == 2  # 1.5 → 2
