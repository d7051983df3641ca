"""The request log as CSV: a header and one line per request, produced a batch at a time."""

from __future__ import annotations

import csv
import io
from typing import Iterable, Iterator

COLUMNS = ("time_utc", "request_id", "key", "endpoint", "model_requested", "model_served", "provider", "status",
           "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "ttft_ms", "fallback_layer", "error")

# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value) -> str:
    """One cell's text; text a spreadsheet would run as a formula gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def cost_usd(micros: int) -> str:
    """Micro-dollars as plain dollars with six decimals (a number a spreadsheet can sum)."""
    whole, fraction = divmod(int(micros), 1_000_000)
    return f"{whole}.{fraction:06d}"


def _ms(value) -> str:
    return "" if value is None else f"{value:.0f}"


def row_of(r, key_name: str) -> list[str]:
    """The CSV cells of one logged request."""
    return [cell(v) for v in (
        r.created_at.isoformat(timespec="seconds") + "Z", r.request_id, key_name, r.endpoint, r.model_requested,
        r.model_served, r.provider, r.status, r.prompt_tokens, r.completion_tokens, cost_usd(r.cost_micros),
        _ms(r.latency_ms), _ms(r.ttft_ms), r.fallback_layer, r.error)]


def lines(batches: Iterable[list], key_name) -> Iterator[str]:
    """The header, then each batch of rows as one chunk of CSV text; `key_name(row)` names a row's key."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    yield out.getvalue()
    for batch in batches:
        out.seek(0)
        out.truncate()
        writer.writerows(row_of(r, key_name(r)) for r in batch)
        yield out.getvalue()
