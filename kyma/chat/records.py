"""Settle and log a chat request: the ledger, the request log and the token-rate correction together."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kyma.chat.attempts import Attempts
from kyma.chat.call import ChatCall, Prepared, Served
from kyma.errors import KymaError
from kyma.services import key_limits, row_locks
from kyma.services.recording import RequestRecord, commit, finish, logged, record_unheld, settle_batch

if TYPE_CHECKING:
    from kyma.runtime import Runtime


def base_record(prep: Prepared, status: int, *, stream: bool) -> RequestRecord:
    """The request-log record with the fields known before any attempt."""
    return RequestRecord(
        request_id=prep.call.request_id, endpoint=prep.call.endpoint, status=status,
        account=prep.principal.account_id, api_key=prep.principal.api_key_id,
        model_requested=prep.call.asked_for or prep.req.model, alias=prep.alias, stream=stream,
        note=prep.call.note)


def record_served(rt: Runtime, prep: Prepared, served: Served, record: RequestRecord, attempts: Attempts) -> None:
    """Settle at the metered cost and log the request, then correct the token-rate counter."""
    cand, m = served.candidate, served.metered
    record.model_served, record.provider = cand.model.id, cand.route.provider.name
    record.simulated, record.fallback_layer = cand.route.provider.simulated, cand.layer
    record.attempts, record.outcomes = attempts.tried, attempts.outcomes
    record.prompt_tokens, record.completion_tokens = m.usage.prompt_tokens, m.usage.completion_tokens
    record.cached_tokens, record.cost_micros = m.usage.cached_tokens, m.cost.cost_micros
    record.latency_ms = (time.perf_counter() - prep.call.started) * 1000
    _finish(rt, prep, record, m.usage.total_tokens)


def record_failed(rt: Runtime, prep: Prepared, err: KymaError, record: RequestRecord,
                  attempts: Attempts | None) -> None:
    """Release the hold and log a request that no attempt served."""
    record.status, record.error, record.error_code = err.status, err.message, err.code
    if attempts is not None:
        record.attempts, record.outcomes = attempts.tried, attempts.outcomes
    record.latency_ms = (time.perf_counter() - prep.call.started) * 1000
    _finish(rt, prep, record, 0)


def _finish(rt: Runtime, prep: Prepared, record: RequestRecord, used_tokens: int) -> None:
    """Settle, log and correct the token counter: one transaction (shared with the requests finishing
    alongside) when the counters share the database."""
    in_database = rt.limiter.in_database

    def work() -> None:
        _settle(prep, record)
        if in_database:  # Redis counters cannot join the database's transaction: corrected after it
            _correct_tokens(rt, prep, used_tokens)

    # Its writes as data only when they are the settle's alone: the token correction has none.
    batch = None if in_database else settle_batch(record, held=True,
                                                  limited_key=key_limits.limited_key(prep.principal))
    # A served answer that finds every connection in use is charged once one frees: it must not fall to
    # the busy handler, which would give its hold back. Nothing served: the handler answers 503.
    commit(record, work, batch=batch, landed=logged(record), queue_if_busy=record.model_served is not None,
           locks=row_locks.of(prep.principal))
    prep.call.record = record  # before the Redis correction: a failure there must not unlog the request
    if not in_database:
        _correct_tokens(rt, prep, used_tokens)


def _settle(prep: Prepared, record: RequestRecord) -> None:
    """Settle the hold and log the request, and move the hold to the key's spend when it has a limit."""
    if finish(record, held=True):  # a hold the reaper closed first was already taken off the key
        key_limits.settle(prep.principal, prep.hold_micros,
                          record.cost_micros if record.model_served is not None else 0)


def _correct_tokens(rt: Runtime, prep: Prepared, used: int) -> None:
    """Replace the token-per-minute reservation with what the request really used."""
    a = prep.admission
    rt.limiter.record_tokens(prep.principal.account_id, used, a.tokens_reserved, reserved_at=a.reserved_at)


def record_rejected(call: ChatCall, err: KymaError) -> None:
    """Log a request refused before its hold (auth, validation, limits, credits)."""
    record = _unserved(call, err)
    record_unheld(record)
    call.record = record


def record_abandoned(call: ChatCall, err: KymaError, *, later: bool = False) -> None:
    """Log a call that an unexpected error ended before it logged itself; a hold it took is given back
    in full now (its request is over: nothing will settle it, and the reaper would only free it at expiry).
    `later`: every connection is in use, so the write is queued and this returns at once."""
    record = _unserved(call, err)

    def work() -> None:
        if finish(record, held=True):  # a hold was open: it no longer counts against its key's limit either
            key_limits.forget_hold(call.request_id)

    call.record = record
    commit(record, work, landed=logged(record), later=later, locks=row_locks.of(call.principal))


def _unserved(call: ChatCall, err: KymaError) -> RequestRecord:
    """The request-log record of a call that no attempt served, from what the call knows."""
    body = call.body if isinstance(call.body, dict) else {}
    model = call.asked_for or body.get("model", "")
    principal = call.principal
    return RequestRecord(request_id=call.request_id, endpoint=call.endpoint, status=err.status,
                         account=principal.account_id if principal else None,
                         api_key=principal.api_key_id if principal else None,
                         model_requested=model if isinstance(model, str) else "",
                         stream=bool(body.get("stream")), error=err.message, error_code=err.code,
                         latency_ms=(time.perf_counter() - call.started) * 1000)
