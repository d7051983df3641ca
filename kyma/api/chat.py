"""POST /v1/chat/completions: the OpenAI protocol in front of the chat pipeline."""

from __future__ import annotations

import json
from typing import Callable

from flask import Response, current_app, request

from kyma import chat
from kyma.api import api_bp, choices
from kyma.api.credentials import principal_from_request
from kyma.api.failures import track
from kyma.api.parsing import json_object
from kyma.api.refusals import model_asked
from kyma.api.request_ids import request_id
from kyma.api.sse import KEEPALIVE, coalesced, sse_response
from kyma.errors import KymaError
from kyma.runtime import runtime
from kyma.services.accounts import Principal


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # json.dumps would build one per chunk


def _dumps(obj) -> bytes:
    return _ENCODER.encode(obj).encode()


class _Reply(Response):
    """A JSON answer whose headers go out as they are.

    werkzeug copies every response's headers on the way out, to encode a Location, drop a length a
    status must not carry, or fill in a missing one; a 200 built here has its length and no Location.
    """

    def get_wsgi_headers(self, environ):
        names = {name.lower() for name, _ in self.headers}  # one pass: each `in` would lower every name
        if (self.status_code != 200 or "content-length" not in names or "location" in names
                or "content-location" in names):
            return super().get_wsgi_headers(environ)
        return self.headers


def json_response(body: dict, headers: dict) -> Response:
    """The JSON bytes Flask's jsonify would send, with the headers given at construction (werkzeug
    then appends them, instead of replacing one by one as headers.update does)."""
    return _Reply(current_app.json.dumps(body) + "\n", mimetype="application/json", headers=headers)


def new_call(endpoint: str) -> chat.ChatCall:
    """The chat call for this HTTP request, under its own request id (each of a fan-out's calls too)."""
    return track(chat.ChatCall(endpoint, sim_fault=request.headers.get("X-Kyma-Sim-Fault"),
                               request_id=request_id(request.headers.get("X-Request-Id"))))


def serve(call: chat.ChatCall, read_body=json_object) -> chat.Reply | chat.ChatStream:
    """Hand this HTTP request to the chat pipeline: credentials and body from the request."""
    return chat.serve(runtime(), call, lambda: _authenticated(call), read_body)


def _authenticated(call: chat.ChatCall) -> Principal:
    """The request's principal; a refusal here notes the model the body names, for the log row."""
    try:
        return principal_from_request(request)
    except KymaError:
        call.body = {"model": model_asked()}  # the body is not read otherwise before credentials pass
        raise


@api_bp.post("/chat/completions")
def chat_completions():
    """Create a chat completion, streamed or not."""
    several = choices.fan_out_body(request.get_data(cache=True))
    if several is not None:
        reply = choices.fan_out(several, lambda body: serve(new_call("chat"), lambda: body))
        return json_response(reply.body, reply.headers)
    outcome = serve(new_call("chat"))
    if isinstance(outcome, chat.Reply):
        return json_response(outcome.body, outcome.headers)
    body = coalesced(openai_sse(outcome), outcome.more_ready)
    return sse_response(body, outcome.headers(), outcome.close)


def openai_sse(stream: chat.ChatStream, shape: Callable[[dict], dict | None] | None = None):
    """OpenAI SSE framing: data: {chunk}, then data: [DONE]; a failure ends with an error object.

    `shape` rewrites each chunk for an endpoint whose chunks differ (None drops one)."""
    if not stream.ready:
        yield KEEPALIVE  # a slow upstream: commit the headers now, keep the client waiting politely
    for event in stream.events():
        if isinstance(event, chat.Chunk):
            data = event.data if shape is None else shape(event.data)
            if data is not None:
                yield b"data: " + _dumps(data) + b"\n\n"
        elif isinstance(event, chat.KeepAlive):
            yield KEEPALIVE
        elif isinstance(event, chat.Done):
            yield b"data: [DONE]\n\n"
        elif isinstance(event, chat.Failed):
            yield b"data: " + _dumps(event.error.to_openai()) + b"\n\n"
