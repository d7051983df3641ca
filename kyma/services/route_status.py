"""Every provider route with its live circuit state and recent health, and the operator's switches on it."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from kyma.db import write_transaction
from kyma.errors import InvalidRequest
from kyma.models import RequestLog, RouteOutcome, utcnow
from kyma.services import audit
from kyma.services.breaker import DISABLED, HALF_OPEN, HELD, HELD_OPEN, BreakerState, CircuitBreaker
from kyma.services.stats import percentile

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


def route_health(routes, breaker: CircuitBreaker, minutes: int = 15) -> list[RouteHealth]:
    """Every route of the table, in model then fallback order, with its state and last `minutes` of outcomes."""
    since = utcnow() - timedelta(minutes=minutes)
    latencies, errors, last_error = defaultdict(list), defaultdict(int), {}
    for model, provider, ok, latency, error in (
            RouteOutcome.select(RouteOutcome.model, RouteOutcome.provider, RouteOutcome.ok, RouteOutcome.latency_ms,
                                RouteOutcome.error)
            .where(RouteOutcome.created_at >= since).order_by(RouteOutcome.id.desc()).limit(MAX_ROWS).tuples()):
        latencies[(model, provider)].append(latency)
        if not ok:
            errors[(model, provider)] += 1
            last_error.setdefault((model, provider), error)
    ttfts = defaultdict(list)
    for model, provider, ttft in (RequestLog.select(RequestLog.model_served, RequestLog.provider, RequestLog.ttft_ms)
                                  .where((RequestLog.created_at >= since) & RequestLog.ttft_ms.is_null(False))
                                  .order_by(RequestLog.id.desc()).limit(MAX_ROWS).tuples()):
        ttfts[(model, provider)].append(ttft)
    out = []
    for model_id, model_routes in routes.by_model.items():
        for r in model_routes:
            k = (model_id, r.provider.name)
            out.append(RouteHealth(r.key, model_id, r.provider.name, r.upstream_model, r.provider.simulated,
                                   breaker.describe(r.key), len(latencies[k]), errors[k], percentile(latencies[k], 50),
                                   percentile(latencies[k], 95), percentile(ttfts[k], 50), last_error.get(k)))
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
