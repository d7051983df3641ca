"""Small statistics the console shows: percentiles of a list of numbers, and the same in SQL."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0–100) by nearest rank, always a value that occurred (the dashboard's SQL
    median picks the same row); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n·q/100), at least the first
    return ordered[int(rank) - 1]


def rank_sql(count: str, q: int) -> str:
    """SQL for the nearest rank percentile() takes of `count` values: ceil(count·q/100) in integer arithmetic
    (the same on SQLite and PostgreSQL), for a ROW_NUMBER() to be compared with."""
    return f"(({count}) * {int(q)} + 99) / 100"
