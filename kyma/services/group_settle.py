"""PostgreSQL: settle and log a whole group of finished requests in one statement, one round trip.

The group's requests go to the server as columns (arrays) that the statement unnests, so its text is
the same for any group size and each connection plans it once. In one statement it closes every
hold still open, appends the release (and usage) entries, moves each account's balance by the
group's sum, and inserts the request-log and route-outcome rows: one atomic write, committed by
itself, with the same rows as `recording.finish` writes request by request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kyma.db import database
from kyma.models import utcnow
from kyma.services.recording import RequestRecord, log_row, outcome_row

log = logging.getLogger(__name__)

# Each column's SQL type, in the order recording's row builders give the values.
_LOG_TYPES = (("request_id", "text"), ("endpoint", "text"), ("status", "int"), ("account_id", "int"),
              ("api_key_id", "int"), ("model_requested", "text"), ("alias", "text"), ("model_served", "text"),
              ("provider", "text"), ("simulated", "boolean"), ("fallback_layer", "int"), ("attempts", "int"),
              ("prompt_tokens", "int"), ("completion_tokens", "int"), ("cached_tokens", "int"),
              ("cost_micros", "bigint"), ("latency_ms", "float8"), ("ttft_ms", "float8"), ("stream", "boolean"),
              ("error", "text"), ("error_code", "text"), ("note", "text"), ("upstream_cost_micros", "bigint"),
              ("created_at", "timestamp"))
_OUTCOME_TYPES = (("request_id", "text"), ("model", "text"), ("provider", "text"), ("role", "text"),
                  ("ok", "boolean"), ("status", "int"), ("error", "text"), ("latency_ms", "float8"),
                  ("completion_tokens", "int"), ("cost_micros", "bigint"), ("created_at", "timestamp"))
_ENTRY = '"account_id", "kind", "amount_micros", "request_id", "idempotency_key", "note", "created_at"'


def _insert_unnested(table: str, types: tuple[tuple[str, str], ...]) -> str:
    names = ", ".join(f'"{name}"' for name, _ in types)
    arrays = ", ".join(f"%s::{sql_type}[]" for _, sql_type in types)
    return f'INSERT INTO "{table}" ({names}) SELECT * FROM unnest({arrays})'


# "done": the group (request id, cost, whether a model served it, whether it holds credit).
# Every data-modifying part of a WITH runs once and sees the same snapshot; the entries and the
# balance read the holds this statement closed, so a hold closed before (by the reaper) adds nothing.
# A release alone gives a failed request's hold back; a served one also pays its cost, and an
# overshoot (cost above the hold) says so in its note, as ledger.settle_hold does.
STATEMENT = (
    'WITH "done" AS (SELECT * FROM unnest(%s::text[], %s::bigint[], %s::boolean[], %s::boolean[]) '
    'AS t("request_id", "cost", "served", "held")), '
    # Each hold is found by its request id's unique index. The open test is written so that the
    # partial index of open holds cannot serve it: that index keeps an entry for every hold closed
    # since the last vacuum, which a bitmap scan visits each time, and the planner's estimate (a few
    # open holds) does not see them; a reused plan chose it, and its cost grew with every request.
    '"closed" AS (UPDATE "hold" AS h SET "closed_at" = %s::timestamp FROM "done" AS d '
    'WHERE d."held" AND h."request_id" = d."request_id" AND h."closed_at"::text IS NULL '
    'RETURNING h."account_id", h."amount_micros", d."request_id", d."cost", d."served"), '
    f'"entries" AS (INSERT INTO "ledgerentry" ({_ENTRY}) '
    'SELECT "account_id", \'release\', "amount_micros", "request_id", "request_id" || \':release\', '
    'CASE WHEN "served" THEN \'\' ELSE \'request failed\' END, %s::timestamp FROM "closed" UNION ALL '
    'SELECT "account_id", \'usage\', -"cost", "request_id", "request_id" || \':usage\', '
    'CASE WHEN "cost" > "amount_micros" THEN \'overshoot \' || ("cost" - "amount_micros") || '
    '\' micros over the hold\' ELSE \'\' END, %s::timestamp FROM "closed" WHERE "served"), '
    # Accounts are locked in id order, as every write of several accounts locks them (row_locks): an
    # UPDATE locks rows in whatever order its join yields them, whatever a subquery's ORDER BY says,
    # but a locking SELECT sorts first and then locks. The UPDATE only meets rows "locked" yielded,
    # each after it was locked, so it waits for no one; a locking CTE is never inlined.
    '"locked" AS (SELECT a."id", s."delta" FROM "account" AS a JOIN (SELECT "account_id", '
    'SUM("amount_micros" - CASE WHEN "served" THEN "cost" ELSE 0 END) AS "delta" FROM "closed" '
    'GROUP BY "account_id") AS s ON a."id" = s."account_id" WHERE s."delta" <> 0 ORDER BY a."id" FOR UPDATE OF a), '
    '"balances" AS (UPDATE "account" AS a SET "balance_micros" = a."balance_micros" + l."delta" '
    'FROM "locked" AS l WHERE a."id" = l."id"), '
    f'"outcomes" AS ({_insert_unnested("routeoutcome", _OUTCOME_TYPES)}), '
    f'"logged" AS ({_insert_unnested("requestlog", _LOG_TYPES)}) '
    'SELECT "request_id", "amount_micros", "cost", "served" FROM "closed"'
)


@dataclass(frozen=True)
class Finished:
    """A finished request to settle and log: `held` when it holds credit (a rejected one does not)."""

    record: RequestRecord
    held: bool


def finish_many(items: list[Finished]) -> list[bool]:
    """Settle (or release) and log every item in one statement; for each, True when it closed the hold."""
    now = utcnow()
    records = [item.record for item in items]
    done = ([r.request_id for r in records], [r.cost_micros for r in records],
            [r.model_served is not None for r in records], [item.held for item in items])
    outcomes = [outcome_row(r.request_id, o, now) for r in records for o in r.outcomes]
    params = [*done, now, now, now, *_columns(outcomes, len(_OUTCOME_TYPES)),
              *_columns([log_row(r, now) for r in records], len(_LOG_TYPES))]
    closed = set()
    for request_id, held, cost, served in database.obj.execute_sql(STATEMENT, params).fetchall():
        closed.add(request_id)
        if served and cost > held:
            log.warning("request %s cost %d micros over its hold", request_id, cost - held)
    return [item.held and item.record.request_id in closed for item in items]


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows as one list per column (what unnest takes back apart)."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]
