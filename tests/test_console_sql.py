"""The console's per-model, per-provider and per-route summaries, summed in SQL, equal the Python summing
they replaced (nearest-rank percentiles, error rates, costs, order) on random traffic, on both backends."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta

import pytest

from kyma.models import RequestLog, RouteOutcome, utcnow
from kyma.services import route_status, traffic
from kyma.services.periods import PERIODS
from tests.percentiles import percentile


@pytest.fixture()
def app(make_app, backend_db):
    return make_app(database_url=backend_db)


def _old_summaries(period, now):
    """The console's summing before it moved into SQL: every row of the period read into Python."""
    rows = (RequestLog.select(RequestLog.model_served, RequestLog.model_requested, RequestLog.provider,
                              RequestLog.status, RequestLog.latency_ms, RequestLog.ttft_ms,
                              RequestLog.upstream_cost_micros, RequestLog.cost_micros)
            .where(RequestLog.created_at >= period.start(now)).order_by(RequestLog.id.desc()).tuples())
    by_model, by_provider = defaultdict(list), defaultdict(list)
    for row in rows:
        by_model[row[0] or row[1] or "?"].append(row)
        by_provider[row[2] or "(none)"].append(row)

    def summed(groups):
        out = []
        for name, rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            lat = [r[4] for r in rs]
            ttft = [r[5] for r in rs if r[5] is not None]
            failed = sum(1 for r in rs if not 200 <= r[3] < 300)
            out.append(traffic.Summary(name, len(rs), len(rs) / period.minutes, failed / len(rs),
                                       percentile(lat, 50), percentile(lat, 95), percentile(ttft, 50),
                                       percentile(ttft, 95), sum(r[6] or 0 for r in rs), sum(r[7] or 0 for r in rs)))
        return out

    return summed(by_model), summed(by_provider)


def _old_route_health(since):
    """Per (model, provider): latencies, failures and newest error, and TTFTs, as the Python loop found them."""
    latencies, errors, last_error, ttfts = defaultdict(list), defaultdict(int), {}, defaultdict(list)
    for model, provider, ok, latency, error in (
            RouteOutcome.select(RouteOutcome.model, RouteOutcome.provider, RouteOutcome.ok, RouteOutcome.latency_ms,
                                RouteOutcome.error)
            .where(RouteOutcome.created_at >= since).order_by(RouteOutcome.id.desc()).tuples()):
        latencies[(model, provider)].append(latency)
        if not ok:
            errors[(model, provider)] += 1
            last_error.setdefault((model, provider), error)
    for model, provider, ttft in (RequestLog.select(RequestLog.model_served, RequestLog.provider, RequestLog.ttft_ms)
                                  .where((RequestLog.created_at >= since) & RequestLog.ttft_ms.is_null(False)).tuples()):
        ttfts[(model, provider)].append(ttft)
    return latencies, errors, last_error, ttfts


def _random_traffic(rng: random.Random, now, routes, n: int = 600) -> None:
    """Requests and attempts over the last two hours (inserted out of time order), with ties, blanks and NULLs."""
    pairs = [(m, r.provider.name) for m, rs in routes.by_model.items() for r in rs][:6]
    logs, outcomes = [], []
    for i in range(n):
        model, provider = rng.choice(pairs)
        served = rng.random() < 0.8
        ok = rng.random() < 0.75
        # Minutes ago, kept clear of the 15-minute edge so that the route page's own clock cannot move a row across.
        ago = rng.choice([rng.uniform(0.05, 14.5), rng.uniform(15.5, 120)])
        at = now - timedelta(minutes=ago)
        logs.append(dict(
            request_id=f"r{i}", endpoint="chat", status=rng.choice([200, 200, 200, 201, 400, 429, 500, 502, 503]),
            model_requested=rng.choice([model, "", "unknown-model"]), model_served=model if served else rng.choice([None, ""]),
            provider=provider if served else rng.choice([None, ""]), latency_ms=rng.choice([round(rng.uniform(1, 900), 3), 100.0]),
            ttft_ms=rng.choice([None, 50.0, round(rng.uniform(1, 300), 3)]), cost_micros=rng.randrange(0, 5000),
            upstream_cost_micros=rng.randrange(0, 5000), created_at=at))
        outcomes.append(dict(request_id=f"r{i}", model=model, provider=provider, ok=ok, status=200 if ok else 502,
                             error=None if ok else rng.choice([f"boom {i}", None]),
                             latency_ms=rng.choice([round(rng.uniform(1, 900), 3), 250.0]), created_at=at))
    RequestLog.insert_many(logs).execute()
    RouteOutcome.insert_many(outcomes).execute()


@pytest.mark.parametrize("seed", [1, 2])
def test_sql_summaries_match_the_python_ones(app, seed):
    rt = app.extensions["kyma"]
    with app.app_context():
        now = utcnow()
        _random_traffic(random.Random(seed), now, rt.routes)
        for name in ("15m", "1h", "24h"):
            period = PERIODS[name]
            new, old = traffic.summaries(period, now), _old_summaries(period, now)
            assert new == old, name
            assert sum(s.requests for s in new[0]) > 0
        latencies, errors, last_error, ttfts = _old_route_health(utcnow() - timedelta(minutes=15))
        health = route_status.route_health(rt.routes, rt.breaker, 15)
        assert sum(h.attempts for h in health) == sum(len(v) for v in latencies.values()) > 0
        for h in health:
            k = (h.model, h.provider)
            assert (h.attempts, h.errors, h.p50_ms, h.p95_ms, h.ttft_p50_ms, h.last_error) == (
                len(latencies[k]), errors[k], percentile(latencies[k], 50), percentile(latencies[k], 95),
                percentile(ttfts[k], 50), last_error.get(k)), k
