"""The chat pipeline: one entry point for every protocol (chat completions, messages, the playground).

An edge translates its protocol into a ChatCall and calls serve(); it gets a Reply (a whole
answer) or a ChatStream (events to frame), or a KymaError carrying the response headers. Every
request is logged, refused ones included, and nothing above this package runs an attempt.

    authenticate → read the body → prepare (validate, plan, admit, hold)
      → attempts (one loop for plain and streamed) → settle and record
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from kyma.chat.admission import prepare
from kyma.chat.call import ChatCall, Reply, response_headers
from kyma.chat.plain import complete
from kyma.chat.records import record_abandoned, record_rejected
from kyma.chat.events import Chunk, Done, Failed, KeepAlive
from kyma.chat.stream import ChatStream
from kyma.errors import InvalidRequest, KymaError
from kyma.services.accounts import Principal

if TYPE_CHECKING:
    from kyma.runtime import Runtime

__all__ = ["ChatCall", "ChatStream", "Chunk", "Done", "Failed", "KeepAlive", "Reply", "record_abandoned", "serve"]


def serve(rt: Runtime, call: ChatCall, authenticate: Callable[[], Principal], read_body: Callable[[], dict],
          *, keepalive: float | None = None) -> Reply | ChatStream:
    """Serve one chat call: a Reply, or a ChatStream that has waited for its first content (or a
    keep-alive interval). Raises the client's KymaError, with X-Request-Id and the rate-limit
    headers, after logging it; `keepalive` overrides KYMA_KEEPALIVE_SECONDS for the stream."""
    try:
        try:
            call.principal = authenticate()
            call.body = read_body()
            prep = prepare(rt, call, call.principal)
        except RecursionError:  # only a body nested past what the code can follow gets this deep
            raise InvalidRequest("The request body is nested too deeply.", code="nested_too_deeply") from None
    except KymaError as err:
        record_rejected(call, err)
        err.headers.setdefault("X-Request-Id", call.request_id)
        raise
    if not prep.req.stream:
        try:
            return complete(rt, prep)
        except KymaError as err:
            err.headers.update(response_headers(prep, None))
            raise
    stream = ChatStream(rt, prep, keepalive)
    try:
        stream.first()
    except KymaError as err:
        err.headers.update(stream.headers())
        raise
    except BaseException:  # a killed greenlet or a timeout: settle the hold and log, then go on failing
        stream.close()
        raise
    return stream
