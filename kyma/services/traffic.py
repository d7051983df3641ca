"""Every account's requests for the admin console: filtered and paged, and summed per model and provider."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from peewee import JOIN, fn

from kyma.db import query
from kyma.models import Account, RequestLog
from kyma.services.periods import Period
from kyma.services.paging import Page, page_of
from kyma.services.request_log import narrow
from kyma.services.stats import optional_float, pick, recent_ranked

PAGE_SIZE = 50
MAX_ROWS = 100_000  # rows summed per look: bounds the page's cost on a busy gateway
STATUS_CLASSES = ("2xx", "4xx", "5xx")


@dataclass(frozen=True)
class TrafficFilter:
    """Filters over all requests; empty means any. Dates are UTC days, both included."""

    since: date | None = None
    until: date | None = None
    model: str = ""  # requested or served
    status: str = ""  # "2xx" / "4xx" / "5xx" or one status code
    request_id: str = ""  # the id or its beginning
    account: str = ""  # an email (or part of one) or an account id
    provider: str = ""
    layer: str = ""  # a fallback layer, "0" for none
    error: str = ""  # text in the error's message
    error_code: str = ""  # the error's code, exactly
    page: int = 1

    @property
    def narrowed(self) -> bool:
        return any((self.since, self.until, self.model, self.status, self.request_id, self.account, self.provider,
                    self.layer, self.error, self.error_code))


@dataclass(frozen=True)
class Summary:
    """One model's or provider's traffic over a period."""

    name: str
    requests: int
    per_minute: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    upstream_micros: int
    charged_micros: int


def _status_clause(status: str):
    if status in STATUS_CLASSES:
        low = int(status[0]) * 100
        return (RequestLog.status >= low) & (RequestLog.status < low + 100)
    if status.isdigit():
        return RequestLog.status == int(status)
    return None


def matching(flt: TrafficFilter):
    """The query of every request the filter selects (any account)."""
    # Account.id too: a joined row without it would blank the request's account_id.
    query = RequestLog.select(RequestLog, Account.id, Account.email).join(Account, on=(RequestLog.account == Account.id),
                                                              join_type=JOIN.LEFT_OUTER)
    query = narrow(query, flt)
    if (clause := _status_clause(flt.status)) is not None:
        query = query.where(clause)
    if flt.account.isdigit():
        query = query.where(RequestLog.account == int(flt.account))
    elif flt.account:
        query = query.where(fn.LOWER(Account.email).contains(flt.account.lower()))
    if flt.provider:
        query = query.where(RequestLog.provider == flt.provider)
    if flt.layer.isdigit():
        query = query.where(RequestLog.fallback_layer == int(flt.layer))
    if flt.error:
        query = query.where(RequestLog.error.contains(flt.error))
    if flt.error_code:
        query = query.where(RequestLog.error_code == flt.error_code)
    return query


def traffic(flt: TrafficFilter, page_size: int = PAGE_SIZE) -> Page:
    """One page of matching requests, newest first."""
    return page_of(matching(flt).order_by(RequestLog.created_at.desc(), RequestLog.id.desc()), flt, page_size)


# Each group's traffic among the newest MAX_ROWS requests of the period: latencies ranked among every
# row, TTFTs among the rows that have one. The grouping key is filled in below, so the query is
# written once; the name a row without one files under is the query's first parameter.
_SUMMARY_SQL = f"""
{recent_ranked("requestlog", "{key} AS name, id, status, latency_ms, ttft_ms, upstream_cost_micros, cost_micros",
               "name", ("latency_ms", "ttft_ms"))}
SELECT name, COUNT(*), SUM(CASE WHEN status >= 200 AND status < 300 THEN 0 ELSE 1 END),
       {pick("latency_ms", 50)}, {pick("latency_ms", 95)}, {pick("ttft_ms", 50)}, {pick("ttft_ms", 95)},
       SUM(COALESCE(upstream_cost_micros, 0)), SUM(COALESCE(cost_micros, 0))
FROM ranked GROUP BY name ORDER BY COUNT(*) DESC, MAX(id) DESC
"""
# What a row files under: the model served, else the one asked for; the provider. Blank counts as none.
_BY_MODEL = _SUMMARY_SQL.format(key="COALESCE(NULLIF(model_served, ''), NULLIF(model_requested, ''), ?)")
_BY_PROVIDER = _SUMMARY_SQL.format(key="COALESCE(NULLIF(provider, ''), ?)")


def summaries(period: Period, now: datetime | None = None) -> tuple[list[Summary], list[Summary]]:
    """Per served model and per provider over the period: rate, errors, latency, TTFT, cost against charge.
    Summed by the database: a page view reads one row per model or provider, not one per request."""
    since = period.start(now)
    return (_summed(query(_BY_MODEL, "?", since, MAX_ROWS), period),
            _summed(query(_BY_PROVIDER, "(none)", since, MAX_ROWS), period))


def _summed(rows: list[tuple], period: Period) -> list[Summary]:
    """Summaries from the database's rows, busiest first (the newest request breaks a tie)."""
    return [Summary(name, int(n), int(n) / period.minutes, int(failed) / int(n), optional_float(p50),
                    optional_float(p95), optional_float(t50), optional_float(t95), int(upstream), int(charged))
            for name, n, failed, p50, p95, t50, t95, upstream, charged in rows]


def providers_logged() -> list[str]:
    """Providers that appear in the log (for the filter's choices)."""
    return [p for (p,) in RequestLog.select(RequestLog.provider).where(RequestLog.provider.is_null(False))
            .distinct().order_by(RequestLog.provider).tuples()]


def error_codes_logged() -> list[str]:
    """Error codes among the newest logged requests (the code filter's suggestions)."""
    recent = (RequestLog.select(RequestLog.error_code).where(RequestLog.error_code.is_null(False))
              .order_by(RequestLog.id.desc()).limit(MAX_ROWS))  # bounded: a distinct over all history is a scan
    return [c for (c,) in RequestLog.select(recent.c.error_code).from_(recent).distinct()
            .order_by(recent.c.error_code).tuples()]
