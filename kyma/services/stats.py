"""Nearest-rank percentiles summed by the database, in SQL that runs the same on SQLite and PostgreSQL.

A group's q-th percentile is the value ranked ceil(n·q/100) among its n non-null values in order:
always a value that occurred. The console's summaries read the newest rows of a table, rank each
column of interest within its group, and pick each percentile's row in the aggregate.
"""

from __future__ import annotations


def rank_sql(count: str, q: int) -> str:
    """SQL for the nearest rank of the q-th percentile (0–100) among `count` values: ceil(count·q/100) in
    integer arithmetic (the same on SQLite and PostgreSQL), for a ROW_NUMBER() to be compared with."""
    return f"(({count}) * {int(q)} + 99) / 100"


def recent_ranked(table: str, columns: str, group: str, ranked: tuple[str, ...], where: str = "",
                  windows: str = "") -> str:
    """The WITH clause of a summary of `table` per `group`, for a query that reads FROM ranked.

    `recent`: the `columns` of the newest rows created since the first parameter (the time column's
    index finds them), at most the second parameter's number of them, `where` narrowing further.
    `ranked`: those rows, each column named in `ranked` with its rank among its group's non-null
    values, for pick(), and any further `windows`.
    """
    narrowed = f" AND {where}" if where else ""
    # NULLs rank last (SQLite would put them first), after the count of values: no pick lands on one.
    ranks = "".join(f""",
         ROW_NUMBER() OVER (PARTITION BY {group} ORDER BY {c} NULLS LAST) AS {c}_rank,
         COUNT({c}) OVER (PARTITION BY {group}) AS {c}_count""" for c in ranked)
    extra = f",\n         {windows}" if windows else ""
    return f"""WITH recent AS (
  SELECT {columns}
  FROM {table} WHERE created_at >= ?{narrowed} ORDER BY created_at DESC LIMIT ?
), ranked AS (
  SELECT recent.*{ranks}{extra}
  FROM recent
)"""


def pick(column: str, q: int) -> str:
    """An aggregate over a group of `ranked` rows: the q-th percentile of `column` (one recent_ranked
    ranked) by nearest rank; NULL where the group has no value."""
    return f"MAX(CASE WHEN {column}_rank = {rank_sql(f'{column}_count', q)} THEN {column} END)"


def optional_float(value) -> float | None:
    """A number the database returned (int, float or Decimal by backend and column) as a float; NULL as None."""
    return None if value is None else float(value)
