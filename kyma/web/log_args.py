"""The request log's query string both ways: parsed leniently into a LogFilter, written back with what is set."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from kyma.services.request_log import DIRECTIONS, SESSION_KEY, SORTS, STATUS_FILTERS, LogFilter

# Far beyond any real log (20 rows a page); keeps the SQL offset inside a 64-bit integer.
MAX_PAGE = 10_000
DEFAULT = LogFilter()


def _day(args, name: str) -> date | None:
    try:
        return date.fromisoformat(args.get(name, "").strip()) if args.get(name, "").strip() else None
    except ValueError:  # a half-typed date leaves the filter off
        return None


def filter_from_args(args, page: int = 1) -> LogFilter:
    """The filters and sort a query string asks for; unknown values switch a filter off rather than fail."""
    key = args.get("key", "").strip()
    status, sort, direction = args.get("status", ""), args.get("sort", ""), args.get("dir", "")
    return LogFilter(model=args.get("model", "").strip(), status=status if status in STATUS_FILTERS else "",
                     key=key if key == SESSION_KEY or key.isdigit() else "",
                     since=_day(args, "from"), until=_day(args, "to"),
                     request_id=args.get("q", "").strip()[:64],
                     sort=sort if sort in SORTS else DEFAULT.sort,
                     direction=direction if direction in DIRECTIONS else DEFAULT.direction,
                     page=min(page, MAX_PAGE))


def query_args(flt: LogFilter, **changes) -> dict:
    """The query string of a filter (with `changes`), leaving out what is empty or the default."""
    flt = replace(flt, **changes)
    args = {"model": flt.model, "status": flt.status, "key": flt.key,
            "from": flt.since.isoformat() if flt.since else "", "to": flt.until.isoformat() if flt.until else "",
            "q": flt.request_id, "sort": "" if flt.sort == DEFAULT.sort else flt.sort,
            "dir": "" if flt.direction == DEFAULT.direction else flt.direction,
            "page": flt.page if flt.page > 1 else ""}
    return {k: v for k, v in args.items() if v}


def sort_link(flt: LogFilter, column: str) -> tuple[dict, str]:
    """Query args of a column header's link (its own sort, largest first, or flipped) and its aria-sort value."""
    if flt.sort != column:
        return query_args(flt, sort=column, direction="desc", page=1), "none"
    flipped = "asc" if flt.direction == "desc" else "desc"
    current = "descending" if flt.direction == "desc" else "ascending"
    return query_args(flt, direction=flipped, page=1), current
