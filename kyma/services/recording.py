"""Settle and record a request in one short transaction: ledger, request log and route outcomes."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Callable

from playhouse.pool import MaxConnectionsExceeded

from kyma import logs, nul
from kyma.db import connected, write_transaction
from kyma.models import RequestLog, utcnow
from kyma.services import deferred, group_commit, ledger, metrics, row_locks
from kyma.services import landed as landed_rows
from kyma.services.row_locks import RowLocks

log = logging.getLogger(__name__)


@dataclass
class AttemptRecord:
    """One upstream attempt's outcome (feeds uptime and status, and the request's detail)."""

    model: str
    provider: str
    ok: bool
    status: int | None = None
    error: str | None = None
    latency_ms: float = 0.0
    role: str = ""  # "" first try or fallback, "retry" of the same route, "continuation" of a broken stream
    completion_tokens: int = 0
    cost_micros: int = 0
    reason: str = ""  # why it failed, in a few words a metric label can carry (timeout, http_503, …)


@dataclass
class RequestRecord:
    """Everything the request log keeps about one API request."""

    request_id: str
    endpoint: str
    status: int
    account: int | None = None
    api_key: int | None = None
    model_requested: str = ""
    alias: str | None = None
    model_served: str | None = None
    provider: str | None = None
    simulated: bool = False
    fallback_layer: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_micros: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stream: bool = False
    error: str | None = None
    error_code: str | None = None  # the client-facing error's code, to filter failures by kind
    note: str | None = None
    outcomes: list[AttemptRecord] = field(default_factory=list)

    @property
    def upstream_cost_micros(self) -> int:
        """What every attempt cost upstream (the operator's cost; cost_micros is what was charged)."""
        return sum(o.cost_micros for o in self.outcomes)


# Column order of the request-log and route-outcome INSERTs (below, and group_settle's); log_row and
# outcome_row build the values in the same order.
LOG_COLUMNS = ("request_id", "endpoint", "status", "account_id", "api_key_id", "model_requested", "alias",
               "model_served", "provider", "simulated", "fallback_layer", "attempts", "prompt_tokens",
               "completion_tokens", "cached_tokens", "cost_micros", "latency_ms", "ttft_ms", "stream", "error",
               "error_code", "note", "upstream_cost_micros", "created_at")
OUTCOME_COLUMNS = ("request_id", "model", "provider", "role", "ok", "status", "error", "latency_ms",
                   "completion_tokens", "cost_micros", "created_at")


def _insert_text(table: str, columns: tuple[str, ...], rows: int, param: str) -> str:
    row = "(" + ", ".join([param] * len(columns)) + ")"
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ' + ", ".join([row] * rows)


@functools.cache
def _log_insert(param: str) -> str:
    """The request-log INSERT for one backend's parameter style, built once."""
    return _insert_text("requestlog", LOG_COLUMNS, 1, param)


@functools.lru_cache(maxsize=32)
def _outcomes_insert(param: str, rows: int) -> str:
    """One multi-row route-outcome INSERT per backend and attempt count (a request makes a few)."""
    return _insert_text("routeoutcome", OUTCOME_COLUMNS, rows, param)


@functools.lru_cache(maxsize=32)
def _log_and_outcomes_insert(param: str, rows: int) -> str:
    """PostgreSQL: the route outcomes and the request-log row in one statement (one round trip)."""
    return f'WITH "outcomes" AS ({_outcomes_insert(param, rows)}) {_log_insert(param)}'


# The widths of the request log's error columns: PostgreSQL refuses a longer value.
ERROR_CHARS, ERROR_CODE_CHARS = 1000, 64


def log_row(r: RequestRecord, now) -> tuple:
    # bool() as peewee's BooleanField does: PostgreSQL refuses an integer for a boolean column.
    return (r.request_id, _text(r.endpoint, 40), r.status, r.account, r.api_key, _text(r.model_requested, 100),
            _text(r.alias, 100), r.model_served, r.provider, bool(r.simulated), r.fallback_layer, r.attempts,
            r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.cost_micros, r.latency_ms, r.ttft_ms,
            bool(r.stream), _text(r.error, ERROR_CHARS), _text(r.error_code, ERROR_CODE_CHARS), _text(r.note, 200),
            r.upstream_cost_micros, now)


def outcome_row(request_id: str, o: AttemptRecord, now) -> tuple:
    return (request_id, o.model, o.provider, o.role, bool(o.ok), o.status, _text(o.error, 200) or None,
            o.latency_ms, o.completion_tokens, o.cost_micros, now)


def _text(value: str | None, width: int) -> str | None:
    """A text the client or an upstream may have written, as its column holds it on every backend: cut to the
    column's width (PostgreSQL refuses a longer value) and without NUL (PostgreSQL refuses it in text)."""
    return nul.kept(value[:width]) if value else value


def finish(record: RequestRecord, *, held: bool) -> bool:
    """Settle the hold at record.cost_micros (or release it when nothing was served) and log, atomically;
    True when this call closed the hold (False: no hold, or the reaper closed it first)."""
    now = utcnow()
    outcomes = [value for o in record.outcomes for value in outcome_row(record.request_id, o, now)]
    with connected() as db, write_transaction():
        closed = False
        if held and record.model_served is not None:
            closed = ledger.settle_hold(record.request_id, record.cost_micros) is not None
        elif held:
            closed = ledger.release_hold(record.request_id, note="request failed")
        if outcomes and db.param != "?":
            db.execute_sql(_log_and_outcomes_insert(db.param, len(record.outcomes)),
                           outcomes + list(log_row(record, now)))
            return closed
        db.execute_sql(_log_insert(db.param), log_row(record, now))
        if outcomes:
            db.execute_sql(_outcomes_insert(db.param, len(record.outcomes)), outcomes)
    return closed


def commit(record: RequestRecord, work: Callable[[], object], *, batch: group_commit.Batch | None = None,
           landed: group_commit.Landed | None = None, later: bool = False, queue_if_busy: bool = False,
           announced: bool = True, locks: RowLocks = row_locks.NONE) -> None:
    """Commit `work`, the writes that record `record`, with what this worker writes alongside, then announce
    the record (unless `announced` is False). `landed` tells whether the writes landed should the COMMIT's
    answer be lost (without it that write fails rather than run twice). `later`: every connection is in
    use, so the write and its announcement are queued and this returns at once; `queue_if_busy`: so they
    are if the pool turns out full now (otherwise that error propagates). `locks`: the accounts and keys
    `work` writes, locked in one order."""
    after = (lambda: announce(record)) if announced else None
    if not later:
        try:
            group_commit.run(work, batch=batch, landed=landed, locks=locks)
        except MaxConnectionsExceeded:
            if not queue_if_busy:
                raise
        else:
            if after is not None:
                after()  # after the commit: no log I/O while the write lock is held
            return
    deferred.submit(record.request_id, work, after, landed, locks)


def record_unheld(record: RequestRecord, *, later: bool = False) -> None:
    """Log a request that took no hold (a refusal), committed with what this worker writes alongside, and
    announce it. `later` as for commit."""
    commit(record, lambda: finish(record, held=False), batch=settle_batch(record, held=False),
           landed=logged(record), later=later)


def logged(record: RequestRecord) -> group_commit.Landed:
    """Whether the writes that log `record` landed: its request-log row is there (they commit with it)."""
    return group_commit.Landed(landed_rows.logged, record.request_id)


def settle_batch(record: RequestRecord, *, held: bool, limited_key: int | None = None) -> group_commit.Batch:
    """`finish`'s writes as data, which PostgreSQL writes with the group's others in one statement;
    `limited_key`: the key whose credit limit counts the hold (its spend moves as key_limits.settle moves it)."""
    from kyma.services import group_settle, landed  # they build on this module's records and rows

    return group_commit.Batch(group_settle.finish_many, group_settle.Finished(record, held, limited_key),
                              landed.finished)


def mark_failed(record: RequestRecord, status: int, error: str, code: str, *, later: bool = False) -> None:
    """A logged request whose client got an error after all (its edge failed after the pipeline logged it):
    the row says so, and keeps its charge for an operator to see. `later` as for commit."""
    record.status, record.error, record.error_code = status, error, code
    error, code = _text(error, ERROR_CHARS), _text(code, ERROR_CODE_CHARS)

    def work() -> None:
        RequestLog.update(status=status, error=error, error_code=code).where(
            RequestLog.request_id == record.request_id).execute()

    marked = group_commit.Landed(landed_rows.marked, (record.request_id, status, error, code))
    commit(record, work, landed=marked, later=later, announced=False)  # it was announced when it was logged


def announce(record: RequestRecord) -> None:
    """The request's metrics and structured log line, when they are on; call after the transaction that
    recorded it."""
    metrics.observe(record)
    if logs.request_lines():
        logs.request_line(_line(record))


def _line(r: RequestRecord) -> dict:
    """The request's structured log fields: ids, never a credential."""
    line = {"request_id": r.request_id, "account_id": r.account, "api_key_id": r.api_key, "endpoint": r.endpoint,
            "model_requested": r.model_requested, "alias": r.alias, "model_served": r.model_served,
            "provider": r.provider, "fallback_layer": r.fallback_layer, "attempts": r.attempts, "status": r.status,
            "stream": r.stream, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "cached_tokens": r.cached_tokens, "simulated": r.simulated,
            "cost_micros": r.cost_micros, "latency_ms": round(r.latency_ms, 2),
            "ttft_ms": None if r.ttft_ms is None else round(r.ttft_ms, 2), "error": r.error, "note": r.note}
    if r.error_code:
        line["error_code"] = r.error_code
    return line
