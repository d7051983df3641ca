"""An account's usage over a chosen range: requests, tokens and spend per hour or day, and speed per model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import SQL, Case, Select, fn

from kyma.db import database
from kyma.models import RequestLog, utcnow
from kyma.services.stats import rank_sql


@dataclass(frozen=True)
class Range:
    """A usage range: how many buckets of which size end with the current one."""

    name: str
    title: str
    buckets: int
    hourly: bool


RANGES = {r.name: r for r in (Range("24h", "last 24 hours", 24, True), Range("7d", "last 7 days", 7, False),
                              Range("30d", "last 30 days", 30, False))}
DEFAULT_RANGE = "7d"


@dataclass(frozen=True)
class Bucket:
    """One UTC hour or day of usage."""

    start: datetime
    requests: int
    tokens: int
    cost_micros: int


@dataclass(frozen=True)
class ModelSpeed:
    """How fast one served model answered: median time to first token and output tokens per second."""

    model: str
    requests: int
    ttft_p50_ms: float | None
    tokens_per_second: float | None


def range_start(rng: Range, now: datetime | None = None) -> datetime:
    """The start of the range's first bucket (UTC, whole hours or days)."""
    now = now or utcnow()
    if rng.hourly:
        return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=rng.buckets - 1)
    return datetime.combine(now.date(), datetime.min.time()) - timedelta(days=rng.buckets - 1)


def _bucket_key(rng: Range):
    # The timestamp's text ('YYYY-MM-DD HH:…') cut to the hour or the day: the same on SQLite and PostgreSQL.
    # Literal lengths, not parameters: PostgreSQL must see the same expression in SELECT and GROUP BY.
    return fn.SUBSTR(RequestLog.created_at.cast("text"), SQL("1"), SQL("13" if rng.hourly else "10")).coerce(False)


def usage_series(account_id: int, rng: Range, now: datetime | None = None) -> list[Bucket]:
    """Requests, tokens and cost per bucket over the range, oldest first, zero-filled."""
    start = range_start(rng, now)
    key = _bucket_key(rng)
    rows = (RequestLog.select(key, fn.COUNT(RequestLog.id),
                              fn.SUM(RequestLog.prompt_tokens + RequestLog.completion_tokens),
                              fn.SUM(RequestLog.cost_micros))
            .where((RequestLog.account == account_id) & (RequestLog.created_at >= start))
            .group_by(key).tuples())
    fmt = "%Y-%m-%d %H" if rng.hourly else "%Y-%m-%d"
    totals = {datetime.strptime(k, fmt): (int(n), int(t or 0), int(c or 0)) for k, n, t, c in rows}
    step = timedelta(hours=1) if rng.hourly else timedelta(days=1)
    out = []
    for i in range(rng.buckets):
        at = start + i * step
        out.append(Bucket(at, *totals.get(at, (0, 0, 0))))
    return out


def _timed(account_id: int, start: datetime):
    # Successful requests whose first token was timed, in the range.
    return ((RequestLog.account == account_id) & (RequestLog.created_at >= start) & (RequestLog.status >= 200)
            & (RequestLog.status < 300) & RequestLog.ttft_ms.is_null(False))


def _median_ttft(account_id: int, start: datetime) -> dict[str, float]:
    # Each model's p50 by nearest rank, the console summaries' rule (stats.rank_sql): the row whose place
    # among the model's TTFTs in order is ceil(n/2), picked by a window function.
    model = fn.COALESCE(RequestLog.model_served, RequestLog.model_requested)
    ranked = (RequestLog.select(model.alias("model"), RequestLog.ttft_ms.alias("ttft"),
                                fn.ROW_NUMBER().over(partition_by=[model], order_by=[RequestLog.ttft_ms]).alias("rn"),
                                fn.COUNT(RequestLog.id).over(partition_by=[model]).alias("n"))
              .where(_timed(account_id, start))).alias("ranked")
    query = (Select([ranked], [ranked.c.model, ranked.c.ttft]).where(ranked.c.rn == SQL(rank_sql("n", 50)))
             .bind(database.obj))
    return {m: float(t) for m, t in query.tuples()}


def model_speeds(account_id: int, rng: Range, now: datetime | None = None) -> list[ModelSpeed]:
    """Per served model over the range: p50 time to first token and completion tokens per second of generation."""
    start = range_start(rng, now)
    model = fn.COALESCE(RequestLog.model_served, RequestLog.model_requested)
    generating = RequestLog.latency_ms > RequestLog.ttft_ms  # a reply that took no time to stream says nothing
    rows = (RequestLog.select(model, fn.COUNT(RequestLog.id),
                              fn.SUM(Case(None, [(generating, RequestLog.completion_tokens)], 0)),
                              fn.SUM(Case(None, [(generating, RequestLog.latency_ms - RequestLog.ttft_ms)], 0)))
            .where(_timed(account_id, start)).group_by(model).tuples())
    medians = _median_ttft(account_id, start)
    speeds = [ModelSpeed(m, int(n), medians.get(m), float(tokens) / (ms / 1000) if ms and tokens else None)
              for m, n, tokens, ms in rows]
    return sorted(speeds, key=lambda s: (-s.requests, s.model))
