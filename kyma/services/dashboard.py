"""Read-only queries behind the dashboard and status pages: spend, logged requests, credit history, uptime."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from peewee import fn

from kyma.errors import NotFound
from kyma.models import LedgerEntry, RequestLog, RouteOutcome, utcnow
from kyma.services import uptime
from kyma.services.ledger import CREDIT_KINDS


@dataclass(frozen=True)
class DaySpend:
    """What an account spent on one UTC day."""

    day: date
    cost_micros: int
    requests: int


@dataclass(frozen=True)
class ModelSpend:
    """What an account spent on one served model over a period."""

    model: str
    cost_micros: int
    requests: int
    tokens: int


@dataclass(frozen=True)
class ModelHealth:
    """One model on the status page: 7-day uptime, a per-day strip and its current status."""

    model: str
    attempts: int
    uptime_pct: float | None  # None = no traffic in the window, never invented
    daily: list  # [(date, percent or None)], oldest first
    status: str  # operational | degraded | outage | no_data (kyma.services.uptime)


@dataclass(frozen=True)
class StatusBoard:
    """The whole status page."""

    status: str
    window_minutes: int
    models: list[ModelHealth]


def _as_date(value) -> date:
    # peewee may hand back a datetime (it reuses created_at's converter), text or a date.
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _day_start(days: int, today: date | None) -> tuple[date, datetime]:
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    return first, datetime.combine(first, datetime.min.time())


def spend_per_day(account_id: int, days: int = 30, today: date | None = None) -> list[DaySpend]:
    """Spend per UTC day for the last `days` days, oldest first, zero-filled."""
    first, since = _day_start(days, today)
    day = fn.date(RequestLog.created_at)
    rows = (RequestLog.select(day.alias("day"), fn.SUM(RequestLog.cost_micros), fn.COUNT(RequestLog.id))
            .where((RequestLog.account == account_id) & (RequestLog.created_at >= since))
            .group_by(day).tuples())
    totals = {_as_date(d): (int(c or 0), int(n)) for d, c, n in rows}
    out = []
    for i in range(days):
        d = first + timedelta(days=i)
        cost, n = totals.get(d, (0, 0))
        out.append(DaySpend(d, cost, n))
    return out


def spend_per_model(account_id: int, days: int = 30, today: date | None = None) -> list[ModelSpend]:
    """Spend per served model over the last `days` days, most expensive first."""
    _, since = _day_start(days, today)
    model = fn.COALESCE(RequestLog.model_served, RequestLog.model_requested)
    rows = (RequestLog.select(model, fn.SUM(RequestLog.cost_micros), fn.COUNT(RequestLog.id),
                              fn.SUM(RequestLog.prompt_tokens + RequestLog.completion_tokens))
            .where((RequestLog.account == account_id) & (RequestLog.created_at >= since))
            .group_by(model).tuples())
    spends = [ModelSpend(m or "?", int(c or 0), int(n), int(t or 0)) for m, c, n, t in rows]
    return sorted(spends, key=lambda s: (-s.cost_micros, -s.requests, s.model))


def logged_models(account_id: int) -> list[str]:
    """The models that appear in an account's request log (choices for the filter)."""
    model = fn.COALESCE(RequestLog.model_served, RequestLog.model_requested)
    rows = RequestLog.select(model).where(RequestLog.account == account_id).distinct().tuples()
    return sorted(m for (m,) in rows if m)


def request_detail(account_id: int, log_id: int) -> RequestLog:
    """One request of this account; another account's request is NotFound, like a missing one."""
    row = RequestLog.get_or_none((RequestLog.id == log_id) & (RequestLog.account == account_id))
    if row is None:
        raise NotFound("No such request.")
    return row


def logged_request(account_id: int, request_id: str) -> RequestLog | None:
    """This account's log row for a request id, or None when there is none (yet)."""
    return RequestLog.get_or_none((RequestLog.request_id == request_id) & (RequestLog.account == account_id))


def attempts_of(row: RequestLog) -> list[RouteOutcome]:
    """The upstream attempts of one logged request, in the order they were made."""
    return list(RouteOutcome.select().where(RouteOutcome.request_id == row.request_id).order_by(RouteOutcome.id))


def credit_history(account_id: int, limit: int = 10) -> list[LedgerEntry]:
    """The latest credit movements that are not per-request holds (signup, purchases, grants)."""
    return list(LedgerEntry.select()
                .where((LedgerEntry.account == account_id)
                       & LedgerEntry.kind.in_(CREDIT_KINDS))
                .order_by(LedgerEntry.id.desc()).limit(limit))


def daily_uptime(models: list[str], days: int = 7, now: datetime | None = None) -> dict[str, list]:
    """model → [(day, uptime % or None)] for the last `days` UTC days, from RouteOutcome rows."""
    first, since = _day_start(days, (now or utcnow()).date())
    day = fn.date(RouteOutcome.created_at)
    ok_sum = fn.SUM(RouteOutcome.ok.cast("integer"))
    rows = (RouteOutcome.select(RouteOutcome.model, day, fn.COUNT(RouteOutcome.id), ok_sum)
            .where(RouteOutcome.created_at >= since).group_by(RouteOutcome.model, day).tuples())
    counts: dict[str, dict[date, tuple[int, int]]] = {}
    for model, d, n, ok in rows:
        counts.setdefault(model, {})[_as_date(d)] = (int(n), int(ok or 0))
    out = {}
    for model in models:
        strip = []
        for i in range(days):
            n, ok = counts.get(model, {}).get(first + timedelta(days=i), (0, 0))
            strip.append((first + timedelta(days=i), round(100 * ok / n, 2) if n else None))
        out[model] = strip
    return out


def status_board(models: list[str], now: datetime | None = None) -> StatusBoard:
    """7-day uptime, daily strips and current status for every model (the /status page)."""
    now = now or utcnow()
    totals = {u.model: u for u in uptime.model_uptime(models, now=now)}
    report = uptime.service_status(models, now=now)
    current = {m.model: m.status for m in report.models}
    strips = daily_uptime(models, uptime.UPTIME_DAYS, now)
    health = [ModelHealth(m, totals[m].attempts, totals[m].uptime_pct, strips[m], current[m]) for m in models]
    return StatusBoard(report.status, report.window_minutes, health)
