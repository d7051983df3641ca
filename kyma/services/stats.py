"""Nearest-rank percentiles in SQL, the same on SQLite and PostgreSQL."""

from __future__ import annotations


def rank_sql(count: str, q: int) -> str:
    """SQL for the nearest rank of the q-th percentile among `count` values: ceil(count·q/100) in integer arithmetic
    (the same on SQLite and PostgreSQL), for a ROW_NUMBER() to be compared with."""
    return f"(({count}) * {int(q)} + 99) / 100"
