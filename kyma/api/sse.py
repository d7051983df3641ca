"""Server-sent-event responses: headers, keep-alive comments and framing shared by the stream views."""

from __future__ import annotations

from typing import Iterable

from flask import Response

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
    "Content-Encoding": "identity",
}
KEEPALIVE = b": keep-alive\n\n"


def sse_response(body: Iterable[bytes], headers: dict, on_close) -> Response:
    """A text/event-stream response that calls `on_close` however the stream ends."""
    resp = Response(body, status=200, mimetype="text/event-stream", headers={**SSE_HEADERS, **headers})
    resp.call_on_close(on_close)
    return resp
