"""POST /v1/chat/completions: the OpenAI protocol in front of the chat pipeline."""

from __future__ import annotations

import json

from flask import Response, current_app, request

from kyma.api import api_bp
from kyma.api.credentials import principal_from_request
from kyma.api.parsing import json_object
from kyma.api.sse import KEEPALIVE, coalesced, sse_response
from kyma.errors import KymaError
from kyma.runtime import runtime
from kyma.services import gateway
from kyma.services.streaming import ChatStream, Chunk, Done, Failed, KeepAlive


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(body: dict, headers: dict) -> Response:
    """The JSON bytes Flask's jsonify would send, with the headers given at construction (werkzeug
    then appends them, instead of replacing one by one as headers.update does)."""
    return Response(current_app.json.dumps(body) + "\n", mimetype="application/json", headers=headers)


def start_chat(endpoint: str, body_parser=json_object, translate=None):
    """Authenticate, parse and prepare a chat call; log and re-raise whatever refuses it."""
    call = gateway.ChatCall(body={}, endpoint=endpoint, sim_fault=request.headers.get("X-Kyma-Sim-Fault"))
    principal = None
    try:
        principal = principal_from_request(request)
        raw = body_parser()
        call.body = translate(raw) if translate else raw
        return call, gateway.prepare(runtime(), call, principal)
    except KymaError as err:
        model = call.body.get("model", "") if isinstance(call.body, dict) else ""
        gateway.record_rejected(call, err, principal, model)
        err.headers.setdefault("X-Request-Id", call.request_id)
        raise


def complete(rt, prep: gateway.Prepared) -> gateway.Completion:
    """Run a non-streamed request; its error carries the request id and rate-limit headers."""
    try:
        return gateway.complete(rt, prep)
    except KymaError as err:
        err.headers.update(gateway.response_headers(prep, None))
        raise


def open_stream(rt, prep: gateway.Prepared) -> tuple[ChatStream, bool]:
    """Start a streamed request and wait for its first chunk; a failure before it is a real HTTP error."""
    stream = ChatStream(rt, prep)
    try:
        return stream, stream.first()
    except KymaError as err:
        err.headers.update(stream.headers())
        raise


@api_bp.post("/chat/completions")
def chat_completions():
    """Create a chat completion, streamed or not."""
    rt = runtime()
    _call, prep = start_chat("chat")
    if not prep.req.stream:
        done = complete(rt, prep)
        return json_response(done.body, done.headers)
    stream, started = open_stream(rt, prep)
    body = coalesced(_openai_sse(stream, started), stream.more_ready)
    return sse_response(body, stream.headers(), stream.close)


def _openai_sse(stream: ChatStream, started: bool):
    """OpenAI SSE framing: data: {chunk}, then data: [DONE]; a failure ends with an error object."""
    if not started:
        yield KEEPALIVE  # a slow upstream: commit the headers now, keep the client waiting politely
    for event in stream.events():
        if isinstance(event, Chunk):
            yield b"data: " + _dumps(event.data) + b"\n\n"
        elif isinstance(event, KeepAlive):
            yield KEEPALIVE
        elif isinstance(event, Done):
            yield b"data: [DONE]\n\n"
        elif isinstance(event, Failed):
            yield b"data: " + _dumps(event.error.to_openai()) + b"\n\n"
