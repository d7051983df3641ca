"""Every provider route with its live circuit state and recent health, and the operator's switches on it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from kyma.db import query, write_transaction
from kyma.errors import InvalidRequest
from kyma.models import utcnow
from kyma.services import audit
from kyma.services.breaker import DISABLED, HALF_OPEN, HELD, HELD_OPEN, BreakerState, CircuitBreaker
from kyma.services.stats import optional_float, pick, recent_ranked

MAX_ROWS = 50_000  # outcomes read per look: bounds the page's cost on a busy gateway


@dataclass(frozen=True)
class RouteHealth:
    """One route as the console shows it."""

    key: str
    model: str
    provider: str
    upstream_model: str
    simulated: bool
    breaker: BreakerState
    attempts: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    ttft_p50_ms: float | None
    last_error: str | None

    @property
    def circuit(self) -> str:
        """closed, open, half-open, held open (by hand) or disabled."""
        state = self.breaker.in_effect(time.time())
        return {HALF_OPEN: "half-open", HELD: "held open"}.get(state, state)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.attempts if self.attempts else None


# Each route's outcomes among the newest MAX_ROWS of the window: attempts, failures, latency
# percentiles, and the error of its newest failure.
_OUTCOMES_SQL = f"""
{recent_ranked("routeoutcome", "id, model, provider, ok, latency_ms, error", "model, provider", ("latency_ms",),
               windows="ROW_NUMBER() OVER (PARTITION BY model, provider, ok ORDER BY id DESC) AS newest")}
SELECT model, provider, COUNT(*), SUM(CASE WHEN ok THEN 0 ELSE 1 END), {pick("latency_ms", 50)},
       {pick("latency_ms", 95)}, MAX(CASE WHEN NOT ok AND newest = 1 THEN error END)
FROM ranked GROUP BY model, provider
"""
# Each route's p50 time to first token, over the requests it served in the window that timed one.
_TTFT_SQL = f"""
{recent_ranked("requestlog", "model_served, provider, ttft_ms", "model_served, provider", ("ttft_ms",),
               where="ttft_ms IS NOT NULL")}
SELECT model_served, provider, {pick("ttft_ms", 50)}
FROM ranked GROUP BY model_served, provider
"""


@dataclass(frozen=True)
class _Outcomes:
    attempts: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    last_error: str | None = None


def route_health(routes, breaker: CircuitBreaker, minutes: int = 15) -> list[RouteHealth]:
    """Every route of the table, in model then fallback order, with its state and last `minutes` of outcomes
    (summed by the database: one row per route is read, not one per attempt)."""
    since = utcnow() - timedelta(minutes=minutes)
    outcomes = {(model, provider): _Outcomes(int(n), int(errors), optional_float(p50), optional_float(p95), error)
                for model, provider, n, errors, p50, p95, error in query(_OUTCOMES_SQL, since, MAX_ROWS)}
    ttft = {(model, provider): optional_float(p50) for model, provider, p50 in query(_TTFT_SQL, since, MAX_ROWS)}
    out = []
    for model_id, model_routes in routes.by_model.items():
        for r in model_routes:
            k = (model_id, r.provider.name)
            o = outcomes.get(k, _Outcomes())
            out.append(RouteHealth(r.key, model_id, r.provider.name, r.upstream_model, r.provider.simulated,
                                   breaker.describe(r.key), o.attempts, o.errors, o.p50_ms, o.p95_ms, ttft.get(k),
                                   o.last_error))
    return out


ACTIONS = {"open": HELD_OPEN, "close": "", "disable": DISABLED, "enable": ""}


def switch(actor: str, routes, breaker: CircuitBreaker, route_key: str, action: str) -> BreakerState:
    """Hold a route's circuit open, close it, disable or enable the route by hand; audited. Returns the new state."""
    known = {r.key for rs in routes.by_model.values() for r in rs}
    if route_key not in known:
        raise InvalidRequest(f"No route {route_key!r}.", param="route")
    if action not in ACTIONS:
        raise InvalidRequest(f"Unknown action {action!r}.", param="action")
    before = breaker.describe(route_key)
    breaker.set_manual(route_key, ACTIONS[action])
    after = breaker.describe(route_key)
    with write_transaction():
        audit.record(actor, f"route.{action}", route_key, _public(before), _public(after))
    return after


def _public(st: BreakerState) -> dict:
    return {"state": st.state, "failures": st.failures, "manual": st.manual}
