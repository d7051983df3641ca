"""The request log: one account's requests, filtered, sorted, paged, and read in batches for export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Iterator

from kyma.db import connected
from kyma.models import RequestLog
from kyma.services.paging import Page, page_of

PAGE_SIZE = 20
EXPORT_BATCH = 500
STATUS_FILTERS = ("ok", "error")
SESSION_KEY = "session"  # the key filter's value for requests made with a session token (no API key)

# What the log can be sorted by; every sort ends with the id so the order is total.
SORTS = {
    "time": RequestLog.created_at,
    "cost": RequestLog.cost_micros,
    "latency": RequestLog.latency_ms,
    "tokens": RequestLog.prompt_tokens + RequestLog.completion_tokens,
}
DIRECTIONS = ("desc", "asc")


@dataclass(frozen=True)
class LogFilter:
    """Request-log filters and sort; empty strings and None mean 'any'. Dates are UTC days, both included."""

    model: str = ""
    status: str = ""  # "", "ok" (2xx) or "error" (anything else)
    key: str = ""  # "", an API key's id, or SESSION_KEY
    since: date | None = None
    until: date | None = None
    request_id: str = ""  # the whole id or its beginning
    sort: str = "time"
    direction: str = "desc"
    page: int = 1

    @property
    def narrowed(self) -> bool:
        """True when any filter (not the sort or page) leaves requests out."""
        return bool(self.model or self.status or self.key or self.since or self.until or self.request_id)


def narrow(query, flt):
    """The query with the filters every request list shares: model (requested or served), UTC days, id prefix."""
    if flt.model:
        query = query.where((RequestLog.model_served == flt.model) | (RequestLog.model_requested == flt.model))
    if flt.since:
        query = query.where(RequestLog.created_at >= datetime.combine(flt.since, time.min))
    if flt.until:
        query = query.where(RequestLog.created_at < datetime.combine(flt.until + timedelta(days=1), time.min))
    if flt.request_id:
        query = query.where(RequestLog.request_id.startswith(flt.request_id))
    return query


def _matching(account_id: int, flt: LogFilter):
    query = narrow(RequestLog.select().where(RequestLog.account == account_id), flt)
    if flt.status == "ok":
        query = query.where((RequestLog.status >= 200) & (RequestLog.status < 300))
    elif flt.status == "error":
        query = query.where((RequestLog.status < 200) | (RequestLog.status >= 300))
    if flt.key == SESSION_KEY:
        query = query.where(RequestLog.api_key.is_null())
    elif flt.key.isdigit():
        query = query.where(RequestLog.api_key == int(flt.key))
    return query


def _order(flt: LogFilter) -> tuple:
    column = SORTS.get(flt.sort, RequestLog.created_at)
    if flt.direction == "asc":
        return column.asc(), RequestLog.id.asc()
    return column.desc(), RequestLog.id.desc()


def request_log(account_id: int, flt: LogFilter, page_size: int = PAGE_SIZE) -> Page:
    """One page of the account's requests matching the filter, in its order (newest first by default)."""
    return page_of(_matching(account_id, flt).order_by(*_order(flt)), flt, page_size)


def _after(flt: LogFilter, last: RequestLog):
    # Keyset paging: the rows that come after `last` in the filter's order.
    column = SORTS.get(flt.sort, RequestLog.created_at)
    value = {"time": last.created_at, "cost": last.cost_micros, "latency": last.latency_ms,
             "tokens": last.prompt_tokens + last.completion_tokens}.get(flt.sort, last.created_at)
    if flt.direction == "asc":
        return (column > value) | ((column == value) & (RequestLog.id > last.id))
    return (column < value) | ((column == value) & (RequestLog.id < last.id))


def export_batches(account_id: int, flt: LogFilter, batch: int | None = None) -> Iterator[list[RequestLog]]:
    """Every request the filter selects (all pages), in its order, a bounded batch at a time.

    Each batch is its own short query (keyset, not offset), so no connection or cursor stays open
    while the caller sends a batch to the client.
    """
    batch = batch or EXPORT_BATCH
    last = None
    while True:
        query = _matching(account_id, flt)
        if last is not None:
            query = query.where(_after(flt, last))
        with connected():
            rows = list(query.order_by(*_order(flt)).limit(batch))
        if rows:
            yield rows
        if len(rows) < batch:
            return
        last = rows[-1]
