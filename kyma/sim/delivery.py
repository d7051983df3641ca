"""Deliver a simulated completion: latency, token pacing, and the injected fault.

Sleeps use time.sleep, which gunicorn's gevent worker has patched into a cooperative sleep.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass

from flask import Response

from kyma.sim.errors import STATUS_FAULTS, context_length_error, error_response
from kyma.sim.faults import Fault
from kyma.sim.render import DONE, Completion, completion_body, stream_events

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class Pacing:
    """How fast the simulated provider answers."""

    latency_s: float = 0.0
    tokens_per_sec: float = 0.0
    timeout_s: float = 30.0

    def for_tokens(self, tokens: int) -> float:
        """Seconds it takes to generate `tokens`."""
        return tokens / self.tokens_per_sec if self.tokens_per_sec > 0 else 0.0


def pause(seconds: float) -> None:
    """Sleep only when there is something to wait for (even sleep(0) costs a syscall or a yield)."""
    if seconds > 0:
        time.sleep(seconds)


def drop_connection(environ: dict) -> None:
    """Close the client connection without an HTTP response (gunicorn's EPIPE on write is silent)."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        raise ConnectionAbortedError("the simulator can drop connections only under gunicorn")
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the client is already gone: nothing left to drop


def fault_response(fault: Fault | None, prompt_tokens: int, environ: dict) -> Response | None:
    """A response that replaces the answer (HTTP error, refused connection), or None."""
    if fault is None:
        return None
    if fault.kind in STATUS_FAULTS:
        status, message, type_, code, headers = STATUS_FAULTS[fault.kind]
        if fault.kind == "429":  # the fault's number is the Retry-After
            headers = {"Retry-After": str(fault.position), "retry-after-ms": str(fault.position * 1000)}
        return error_response(status, message, type_, code, headers=headers)
    if fault.kind == "context-length":
        return context_length_error(max(prompt_tokens - 1, 1), prompt_tokens).response()
    if fault.kind == "refuse":
        drop_connection(environ)
        return Response(b"", status=200)
    return None


def plain_response(c: Completion, fault: Fault | None, pacing: Pacing, headers: dict,
                   render=completion_body) -> Response:
    """A non-streamed completion (`render` makes its body); stream faults become a bad body or a stall."""
    kind = fault.kind if fault else None
    pause(pacing.latency_s + pacing.for_tokens(c.completion_tokens))
    body = json.dumps(render(c, with_usage=kind != "no-usage")).encode()
    return json_response(body, fault, pacing, headers)


def json_response(body: bytes, fault: Fault | None, pacing: Pacing, headers: dict) -> Response:
    """A JSON answer with the fault (if any) applied: a late start, a cut or bad body, a stall."""
    kind = fault.kind if fault else None
    if kind == "slow-first":
        pause(fault.position)
    if kind == "cut":
        body = body[: len(body) // 2]
    elif kind in ("malformed", "garbage"):
        body = body[:40] + b'"choices": [{oops'
    if kind == "stall":
        def stalled():
            yield b""  # headers go out now; the body only after the stall
            time.sleep(pacing.timeout_s)
            yield body
        return Response(stalled(), mimetype="application/json",
                        headers={**headers, "Content-Length": str(len(body))})
    return Response(body, mimetype="application/json", headers=headers)


def stream_response(c: Completion, fault: Fault | None, pacing: Pacing, include_usage: bool,
                    environ: dict, headers: dict, render=stream_events) -> Response:
    """An SSE stream of chunks (`render` makes them), paced, with the stream fault (if any) at its position."""
    kind = fault.kind if fault else None
    events = render(c, include_usage=include_usage and kind != "no-usage")

    def generate():
        if kind == "slow-first":
            yield b""  # the headers go out now; the first token only after the delay
            pause(fault.position)
        pause(pacing.latency_s)
        for i, event in enumerate(events):
            if fault is not None and i >= fault.position:
                if kind == "garbage":  # from here on nothing parses, and the stream never ends cleanly
                    yield b"data: {garbage " + str(i).encode() + b"\n\n"
                    continue
                if kind == "no-finish":  # the answer stops here, but the stream ends as if complete
                    break
            if fault is not None and i == fault.position:
                if kind == "cut":
                    drop_connection(environ)
                    return
                if kind == "malformed":
                    yield b'data: {"id": "' + c.id.encode() + b'", "choices": [{"delta": oops\n\n'
                elif kind == "stall":
                    time.sleep(pacing.timeout_s)
            pause(pacing.for_tokens(event.tokens))
            yield event.encode()
        if kind in ("cut", "garbage"):  # cut: its position lies past the last chunk, cut before [DONE]
            drop_connection(environ)
            return
        if kind != "no-done":
            yield DONE

    return Response(generate(), mimetype="text/event-stream", headers={**headers, **SSE_HEADERS})
