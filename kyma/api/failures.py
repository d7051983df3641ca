"""Unexpected errors under /v1: the 500 a client gets, and the request-log rows that keep nothing lost.

A view's pipeline calls log themselves, refusals and failures included. When an unexpected exception
ends the HTTP request instead, the error handler finds the calls it made here: each one that had not
logged itself is logged as a 500 and its credit hold given back; one that was served and billed
before the edge failed keeps its charge and its row is marked failed; a request that made no call
(a view outside the pipeline) is logged as a refusal. No call is logged twice. A request that found
every database connection in use is handled the same way, its writes queued for when one is free.
"""

from __future__ import annotations

from flask import request

from kyma import chat
from kyma.api.refusals import record_refusal
from kyma.errors import GatewayBusy, InternalError, KymaError
from kyma.services.recording import mark_failed

_NOT_BILLED = "Internal error; the request was not billed."
_BUSY = "The gateway is busy; retry shortly. The request was not billed."

# In the WSGI environ, which the request context's copies share (the greenlets of an `n` > 1 fan-out).
_CALLS = "kyma.chat_calls"


def track(call: chat.ChatCall) -> chat.ChatCall:
    """Note a pipeline call this HTTP request makes, for the error handler should the request fail."""
    request.environ.setdefault(_CALLS, []).append(call)
    return call


def internal_error() -> InternalError:
    """Log the request an unexpected exception ended, once, and return the 500 for its client."""
    billed = _billed()
    err = InternalError("Internal error after the answer was billed; the request id finds it in the request log."
                        if billed else _NOT_BILLED)
    _log_ended(err, InternalError(_NOT_BILLED), later=False)
    return err


def gateway_busy() -> GatewayBusy:
    """The 503 for a request that found every database connection in use, its log rows queued for when one
    is free (waiting for one is what it just failed to do): a hold it took is given back then."""
    err = GatewayBusy("The gateway is busy; retry shortly. The answer was billed; the request id finds it in the "
                      "request log." if _billed() else _BUSY, headers={"Retry-After": "1"})
    _log_ended(err, GatewayBusy(_BUSY), later=True)
    return err


def _billed() -> bool:
    return any(c.record is not None and c.record.model_served is not None for c in request.environ.get(_CALLS, []))


def _log_ended(err: KymaError, unbilled: KymaError, *, later: bool) -> None:
    """Log each call of the request that had not logged itself with `unbilled` (its hold given back), mark the
    billed ones failed with `err`, or log the request itself as refused when it made no call; err gets the
    X-Request-Id."""
    calls: list[chat.ChatCall] = request.environ.get(_CALLS, [])
    if not calls:
        err.headers["X-Request-Id"] = record_refusal(err.status, err.message, err.code, later=later)
        return
    err.headers["X-Request-Id"] = calls[0].request_id
    for call in calls:
        if call.record is None:
            chat.record_abandoned(call, unbilled, later=later)
        elif call.record.model_served is not None:
            mark_failed(call.record, err.status, err.message, err.code, later=later)
