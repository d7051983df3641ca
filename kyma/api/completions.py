"""POST /v1/completions: legacy text completions (prompt, suffix for fill-in-the-middle) via the pipeline.

The pipeline relays them in chat shapes; this edge turns them back into `text_completion` objects.
"""

from __future__ import annotations

import json

from kyma import chat
from kyma.api import api_bp
from kyma.api.chat import json_response, new_call, serve
from kyma.api.sse import KEEPALIVE, coalesced, sse_response
from kyma.translate.completions import legacy_chunk, legacy_reply


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@api_bp.post("/completions")
def create_completion():
    """Create a text completion, streamed or not."""
    call = new_call("completions")
    outcome = serve(call)
    completion_id = f"cmpl-{call.request_id}"
    if isinstance(outcome, chat.Reply):
        return json_response(legacy_reply(outcome.body, completion_id), outcome.headers)
    body = coalesced(_legacy_sse(outcome, completion_id), outcome.more_ready)
    return sse_response(body, outcome.headers(), outcome.close)


def _legacy_sse(stream: chat.ChatStream, completion_id: str):
    """SSE of text_completion chunks, then data: [DONE]; a failure ends with an error object."""
    if not stream.ready:
        yield KEEPALIVE
    for event in stream.events():
        if isinstance(event, chat.Chunk):
            out = legacy_chunk(event.data, completion_id)
            if out is not None:
                yield b"data: " + _dumps(out) + b"\n\n"
        elif isinstance(event, chat.KeepAlive):
            yield KEEPALIVE
        elif isinstance(event, chat.Done):
            yield b"data: [DONE]\n\n"
        elif isinstance(event, chat.Failed):
            yield b"data: " + _dumps(event.error.to_openai()) + b"\n\n"
