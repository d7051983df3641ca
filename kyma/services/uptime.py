"""Model health measured from recorded traffic: 7-day uptime and current status. Never invented."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import fn

from kyma.models import RequestLog, RouteOutcome, utcnow

UPTIME_DAYS = 7
STATUS_WINDOW_MINUTES = 15
# Success ratios at or above which traffic counts as operational / degraded (below: outage).
OPERATIONAL_RATIO = 0.95
DEGRADED_RATIO = 0.5


@dataclass(frozen=True)
class ModelUptime:
    """Upstream attempts for one model over the window; uptime_pct is None without data."""

    model: str
    attempts: int
    successes: int
    uptime_pct: float | None
    last_attempt_at: datetime | None


@dataclass(frozen=True)
class ModelStatus:
    """Current health of one model from its recent upstream attempts."""

    model: str
    status: str  # operational | degraded | outage | no_data
    attempts: int
    failures: int


@dataclass(frozen=True)
class StatusReport:
    """Overall and per-model status over the recent window."""

    status: str
    window_minutes: int
    requests: int
    server_errors: int
    models: list[ModelStatus]
    updated_at: datetime


def _attempt_counts(since: datetime) -> dict[str, tuple[int, int, datetime | None]]:
    """model → (attempts, successes, last attempt) from RouteOutcome rows since `since`."""
    rows = (RouteOutcome
            .select(RouteOutcome.model, RouteOutcome.ok, fn.COUNT(RouteOutcome.id).alias("n"),
                    fn.MAX(RouteOutcome.created_at).alias("last"))
            .where(RouteOutcome.created_at >= since)
            .group_by(RouteOutcome.model, RouteOutcome.ok)
            .tuples())
    counts: dict[str, tuple[int, int, datetime | None]] = {}
    for model, ok, n, last in rows:
        attempts, successes, latest = counts.get(model, (0, 0, None))
        last = _as_datetime(last)
        latest = max(filter(None, (latest, last)), default=None)
        counts[model] = (attempts + n, successes + (n if ok else 0), latest)
    return counts


def _as_datetime(value) -> datetime | None:
    # SQLite hands aggregate timestamps back as text.
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _classify(total: int, ok: int) -> str:
    if total == 0:
        return "no_data"
    ratio = ok / total
    if ratio >= OPERATIONAL_RATIO:
        return "operational"
    return "degraded" if ratio >= DEGRADED_RATIO else "outage"


def model_uptime(model_ids: list[str], *, days: int = UPTIME_DAYS, now: datetime | None = None) -> list[ModelUptime]:
    """Per-model uptime (successful attempts / attempts, in %) over the last `days` days."""
    counts = _attempt_counts((now or utcnow()) - timedelta(days=days))
    result = []
    for model in model_ids:
        attempts, successes, last = counts.get(model, (0, 0, None))
        pct = round(100.0 * successes / attempts, 2) if attempts else None
        result.append(ModelUptime(model, attempts, successes, pct, last))
    return result


def service_status(model_ids: list[str], *, window_minutes: int = STATUS_WINDOW_MINUTES,
                   now: datetime | None = None) -> StatusReport:
    """Overall status from the requests clients made recently; per model from upstream attempts."""
    now = now or utcnow()
    since = now - timedelta(minutes=window_minutes)
    counts = _attempt_counts(since)
    models = []
    for model in model_ids:
        attempts, successes, _ = counts.get(model, (0, 0, None))
        models.append(ModelStatus(model, _classify(attempts, successes), attempts, attempts - successes))
    recent = RequestLog.select().where(RequestLog.created_at >= since)
    requests = recent.count()
    server_errors = recent.where(RequestLog.status >= 500).count()
    overall = _classify(requests, requests - server_errors)
    if overall == "no_data" and any(m.status != "no_data" for m in models):
        overall = _classify(sum(m.attempts for m in models), sum(m.attempts - m.failures for m in models))
    return StatusReport(overall, window_minutes, requests, server_errors, models, now)
