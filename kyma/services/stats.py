"""Small statistics the console shows: percentiles of a list of numbers."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0–100) by nearest rank, always a value that occurred (the dashboard's SQL
    median picks the same row); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n·q/100), at least the first
    return ordered[int(rank) - 1]
