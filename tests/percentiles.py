"""The reference the database's percentiles are checked against: nearest rank, computed in Python."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0–100) by nearest rank, always a value that occurred; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n·q/100), at least the first
    return ordered[int(rank) - 1]
