"""Pages of an ordered query: the rows, the filter that chose them, and whether more follow."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Page:
    """One page of rows in a filter's order (the request log, the console's traffic and audit pages)."""

    rows: list
    filter: Any  # any frozen dataclass with a `page` (from 1): LogFilter, TrafficFilter, AuditFilter
    has_next: bool

    @property
    def page(self) -> int:
        return self.filter.page

    @property
    def has_previous(self) -> bool:
        return self.filter.page > 1


def page_of(query, flt, page_size: int) -> Page:
    """The filter's page (from 1) of an ordered query, and whether another page follows."""
    page = max(1, flt.page)
    rows = list(query.offset((page - 1) * page_size).limit(page_size + 1))
    return Page(rows[:page_size], replace(flt, page=page), len(rows) > page_size)
