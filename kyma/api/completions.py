"""POST /v1/completions: legacy text completions (prompt, suffix for fill-in-the-middle) via the pipeline.

The pipeline relays them in chat shapes; this edge turns them back into `text_completion` objects.
"""

from __future__ import annotations

from kyma import chat
from kyma.api import api_bp
from kyma.api.chat import json_response, new_call, openai_sse, serve
from kyma.api.sse import coalesced, sse_response
from kyma.translate.completions import legacy_chunk, legacy_reply


@api_bp.post("/completions")
def create_completion():
    """Create a text completion, streamed or not."""
    call = new_call("completions")
    outcome = serve(call)
    completion_id = f"cmpl-{call.request_id}"
    if isinstance(outcome, chat.Reply):
        return json_response(legacy_reply(outcome.body, completion_id), outcome.headers)
    body = coalesced(openai_sse(outcome, lambda data: legacy_chunk(data, completion_id)), outcome.more_ready)
    return sse_response(body, outcome.headers(), outcome.close)
