"""Server-sent-event responses: headers, keep-alive comments and framing shared by the stream views."""

from __future__ import annotations

from typing import Iterable, Iterator

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


def coalesced(pieces: Iterable[bytes], more_ready) -> Iterator[bytes]:
    """Join pieces produced back to back into one write; flush whenever nothing else is waiting.

    A burst (the lead chunks with the first token, or chunks that queued while the client was slow)
    then costs one socket write instead of one each, and no piece waits for a later one.
    """
    pending: list[bytes] = []
    try:
        for piece in pieces:
            if piece:
                pending.append(piece)
            if pending and not more_ready():
                yield b"".join(pending)
                pending.clear()
        if pending:
            yield b"".join(pending)
    finally:
        pieces.close()  # a client that left closes the relay (and so the upstream call) at once
