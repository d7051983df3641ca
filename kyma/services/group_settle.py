"""PostgreSQL: settle and log a whole group of finished requests in one statement, one round trip.

The group's requests go to the server as columns (arrays) that the statement unnests, so its text is
the same for any group size and each connection plans it once. In one statement it closes every
hold still open, appends the release (and usage) entries, moves each account's balance and each
limited key's spend by the group's sums, and inserts the request-log and route-outcome rows: one
atomic write, committed by itself, with the same rows as `recording.finish` and `key_limits.settle`
write request by request. The column lists are recording's and the ledger's, their types the models'.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from kyma.db import database, pipelined
from kyma.models import RequestLog, RouteOutcome, utcnow
from kyma.services.ledger import ENTRY_COLUMNS, overshoot_note
from kyma.services.recording import LOG_COLUMNS, OUTCOME_COLUMNS, RequestRecord, log_row, outcome_row

log = logging.getLogger(__name__)

# The array type each kind of model field is sent as (a text array fits any character column).
_ARRAY_TYPES = {"VARCHAR": "text", "TEXT": "text", "INT": "int", "BIGINT": "bigint", "BOOL": "boolean",
                "FLOAT": "float8", "DOUBLE": "float8", "DATETIME": "timestamp"}


def _insert_unnested(model, columns: tuple[str, ...]) -> str:
    """INSERT of rows sent as one array per column, each typed as the model's field for that column."""
    fields = model._meta.columns
    names = ", ".join(f'"{name}"' for name in columns)
    arrays = ", ".join(f"%s::{_ARRAY_TYPES[fields[name].field_type]}[]" for name in columns)
    return f'INSERT INTO "{model._meta.table_name}" ({names}) SELECT * FROM unnest({arrays})'


# "done": the group (request id, cost, whether a model served it, whether it holds credit, the key whose
# limit counts its hold). Every data-modifying part of a WITH runs once and sees the same snapshot;
# the entries, balances and key spends read the holds this statement closed, so a hold closed before
# (by the reaper) adds nothing. A release alone gives a failed request's hold back; a served one also
# pays its cost, and an overshoot (cost above the hold) says so in its note, as ledger.settle_hold does.
STATEMENT = (
    'WITH "done" AS (SELECT * FROM unnest(%s::text[], %s::bigint[], %s::boolean[], %s::boolean[], %s::int[]) '
    'AS t("request_id", "cost", "served", "held", "key_id")), '
    # Each hold is found by its request id's unique index (the ids again as one array, so that no
    # plan reads more of the index than the group's entries). The open test is written so that the
    # partial index of open holds cannot serve it: that index keeps an entry for every hold closed
    # since the last vacuum, which a bitmap scan visits each time, and the planner's estimate (a few
    # open holds) does not see them; a reused plan chose it, and its cost grew with every request.
    '"closed" AS (UPDATE "hold" AS h SET "closed_at" = %s::timestamp FROM "done" AS d '
    'WHERE d."held" AND h."request_id" = ANY(%s::text[]) AND h."request_id" = d."request_id" '
    'AND h."closed_at"::text IS NULL '
    'RETURNING h."account_id", h."amount_micros", d."request_id", d."cost", d."served", d."key_id"), '
    f'"entries" AS (INSERT INTO "ledgerentry" ({ENTRY_COLUMNS}) '
    'SELECT "account_id", \'release\', "amount_micros", "request_id", "request_id" || \':release\', '
    'CASE WHEN "served" THEN \'\' ELSE \'request failed\' END, %s::timestamp FROM "closed" UNION ALL '
    'SELECT "account_id", \'usage\', -"cost", "request_id", "request_id" || \':usage\', '
    + overshoot_note('"cost"') + ', %s::timestamp FROM "closed" WHERE "served"), '
    # Rows several writers share are locked in one order (row_locks): keys by id, then accounts by id.
    # An UPDATE locks rows in whatever order its join yields them, whatever a subquery's ORDER BY
    # says; a locking SELECT sorts first and then locks, and a locking CTE is never inlined. Each
    # UPDATE below only meets rows its CTE yielded, after that CTE locked them, so it waits for no
    # one; the accounts' CTE first reads the keys' CTE to its end (a one-time condition), so every
    # key is locked before any account.
    '"keys" AS (SELECT k."id", s."held", s."spent" FROM "apikey" AS k JOIN (SELECT "key_id", '
    'SUM("amount_micros") AS "held", SUM(CASE WHEN "served" THEN "cost" ELSE 0 END) AS "spent" '
    'FROM "closed" WHERE "key_id" IS NOT NULL GROUP BY "key_id") AS s ON k."id" = s."key_id" '
    'ORDER BY k."id" FOR NO KEY UPDATE OF k), '
    '"accounts" AS (SELECT a."id", s."delta" FROM "account" AS a JOIN (SELECT "account_id", '
    'SUM("amount_micros" - CASE WHEN "served" THEN "cost" ELSE 0 END) AS "delta" FROM "closed" '
    'GROUP BY "account_id") AS s ON a."id" = s."account_id" '
    'WHERE s."delta" <> 0 AND (SELECT COUNT(*) FROM "keys") >= 0 ORDER BY a."id" FOR NO KEY UPDATE OF a), '
    '"spends" AS (UPDATE "apikey" AS k SET "held_micros" = COALESCE(k."held_micros", 0) - l."held", '
    '"spent_micros" = COALESCE(k."spent_micros", 0) + l."spent" FROM "keys" AS l WHERE k."id" = l."id"), '
    '"balances" AS (UPDATE "account" AS a SET "balance_micros" = a."balance_micros" + l."delta" '
    'FROM "accounts" AS l WHERE a."id" = l."id"), '
    f'"outcomes" AS ({_insert_unnested(RouteOutcome, OUTCOME_COLUMNS)}), '
    f'"logged" AS ({_insert_unnested(RequestLog, LOG_COLUMNS)}) '
    'SELECT "request_id", "amount_micros", "cost", "served" FROM "closed"'
)


# A prepared statement keeps the plan it settles on within a connection's first runs (psycopg prepares
# it after five, its default prepare_threshold; the server makes its generic plan five runs later)
# until the tables' statistics change. A connection that drops the statement from its cache of
# prepared ones, or has all of them dropped (psycopg does at every ROLLBACK), plans it again from its
# counted runs onward, without the setting.
# Made while the hold table was small (a new database, before autovacuum has analyzed it), that plan
# reads every hold, and keeps reading them as the table grows by one row a request. So a connection's
# first runs go without table scans, and the plan they leave goes through the index. Later runs reuse
# it without the setting, which costs a pipeline; a plan made again once autovacuum has analyzed the
# tables rests on their real size.
_NO_TABLE_SCANS = ("enable_seqscan", "off")
_PLANNING_RUNS = 20
_runs: WeakKeyDictionary = WeakKeyDictionary()  # psycopg connection -> its runs of STATEMENT so far


@dataclass(frozen=True)
class Finished:
    """A finished request to settle and log: `held` when it holds credit (a rejected one does not);
    `limited_key` the key whose credit limit counts that hold (key_limits.limited_key), if any."""

    record: RequestRecord
    held: bool
    limited_key: int | None = None


def finish_many(items: list[Finished]) -> list[bool]:
    """Settle (or release) and log every item in one statement; for each, True when it closed the hold."""
    now = utcnow()
    records = [item.record for item in items]
    done = ([r.request_id for r in records], [r.cost_micros for r in records],
            [r.model_served is not None for r in records], [item.held for item in items],
            [item.limited_key for item in items])
    outcomes = [outcome_row(r.request_id, o, now) for r in records for o in r.outcomes]
    params = [*done, now, done[0], now, now, *_columns(outcomes, len(OUTCOME_COLUMNS)),
              *_columns([log_row(r, now) for r in records], len(LOG_COLUMNS))]
    db = database.obj
    conn = db.connection()
    runs = _runs.get(conn, 0)
    if runs < _PLANNING_RUNS:
        _runs[conn] = runs + 1
        with pipelined(_NO_TABLE_SCANS) as pipe:
            cursor = pipe.execute(STATEMENT, params)
    else:
        cursor = db.execute_sql(STATEMENT, params)
    closed = set()
    for request_id, held, cost, served in cursor.fetchall():
        closed.add(request_id)
        if served and cost > held:
            log.warning("request %s cost %d micros over its hold", request_id, cost - held)
    return [item.held and item.record.request_id in closed for item in items]


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows as one list per column (what unnest takes back apart)."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]
