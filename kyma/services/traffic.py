"""Every account's requests for the admin console: filtered and paged, and summed per model and provider."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from peewee import JOIN, fn

from kyma.models import Account, RequestLog
from kyma.services.periods import Period
from kyma.services.paging import Page, page_of
from kyma.services.request_log import narrow
from kyma.services.stats import percentile

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


def summaries(period: Period, now: datetime | None = None) -> tuple[list[Summary], list[Summary]]:
    """Per served model and per provider over the period: rate, errors, latency, TTFT, cost against charge."""
    since = period.start(now)
    rows = (RequestLog.select(RequestLog.model_served, RequestLog.model_requested, RequestLog.provider,
                              RequestLog.status, RequestLog.latency_ms, RequestLog.ttft_ms,
                              RequestLog.upstream_cost_micros, RequestLog.cost_micros)
            .where(RequestLog.created_at >= since).order_by(RequestLog.id.desc()).limit(MAX_ROWS).tuples())
    by_model, by_provider = defaultdict(list), defaultdict(list)
    for row in rows:
        by_model[row[0] or row[1] or "?"].append(row)
        by_provider[row[2] or "(none)"].append(row)
    return _sum(by_model, period), _sum(by_provider, period)


def _sum(groups: dict, period: Period) -> list[Summary]:
    out = []
    for name, rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        latencies = [r[4] for r in rows]
        ttfts = [r[5] for r in rows if r[5] is not None]
        failed = sum(1 for r in rows if not 200 <= r[3] < 300)
        out.append(Summary(name, len(rows), len(rows) / period.minutes, failed / len(rows),
                           percentile(latencies, 50), percentile(latencies, 95), percentile(ttfts, 50),
                           percentile(ttfts, 95), sum(r[6] or 0 for r in rows), sum(r[7] or 0 for r in rows)))
    return out


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
