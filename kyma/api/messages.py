"""POST /v1/messages and /v1/messages/count_tokens: the Anthropic protocol in front of the chat pipeline."""

from __future__ import annotations

from flask import jsonify, request

from kyma import chat
from kyma.api import api_bp
from kyma.api.chat import json_response, new_call, serve
from kyma.api.credentials import principal_from_request
from kyma.api.parsing import json_object
from kyma.api.sse import KEEPALIVE, coalesced, sse_response
from kyma.errors import InvalidRequest
from kyma.runtime import runtime
from kyma.translate.anthropic import (AnthropicStreamTranslator, anthropic_to_openai_request, capable_model,
                                      count_tokens_for, map_claude_model, openai_to_anthropic_response)


def _model(body: dict) -> str:
    """The catalog model (or alias) to run for the body's model name; claude-* names map by configuration."""
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("'model' is required.", param="model", code="missing_field")
    rt = runtime()
    return map_claude_model(name, rt.claude_models, rt.catalog)


@api_bp.post("/messages")
def create_message():
    """Create a message, streamed or not (Anthropic Messages API)."""
    raw: dict = {}
    call = new_call("messages")

    def read_body() -> dict:
        raw.update(json_object())
        model = _model(raw)
        body = anthropic_to_openai_request(raw, model=model)
        if model != raw["model"]:
            call.asked_for = raw["model"]  # a claude-* name: reported as the alias it is
            body["model"] = capable_model(model, runtime().catalog, body)
        return body

    outcome = serve(call, read_body)
    stops = raw.get("stop_sequences")
    if isinstance(outcome, chat.Reply):
        return json_response(openai_to_anthropic_response(outcome.body, model=outcome.body["model"],
                                                          stop_sequences=stops), outcome.headers)
    body = coalesced(_anthropic_sse(outcome, stops), outcome.more_ready)
    return sse_response(body, outcome.headers(), outcome.close)


def _anthropic_sse(stream: chat.ChatStream, stops):
    """Anthropic SSE framing; message_start waits for the first chunk, when the serving model is known."""
    if not stream.ready:
        yield KEEPALIVE  # an SSE comment: commits the headers, ignored by every SDK
    translator = None
    for event in stream.events():
        if translator is None and isinstance(event, (chat.Chunk, chat.Done)):
            translator = AnthropicStreamTranslator(model=stream.served.candidate.model.id,
                                                   input_tokens=stream.prep.prompt_tokens,
                                                   message_id=f"msg_{stream.prep.call.request_id}",
                                                   stop_sequences=stops)
        if isinstance(event, chat.Chunk):
            out = translator.feed(event.data)
            if out:
                yield b"".join(out)
        elif isinstance(event, chat.KeepAlive):
            yield translator.ping() if translator else KEEPALIVE
        elif isinstance(event, chat.Done):
            yield b"".join(translator.finish(usage=event.usage, kyma=event.kyma))
        elif isinstance(event, chat.Failed):
            # Before any message_start there is no translator yet; a bare one frames the error the same way.
            yield (translator or AnthropicStreamTranslator(model="", input_tokens=0)).error(event.error)


@api_bp.post("/messages/count_tokens")
def count_message_tokens():
    """Count a message's input tokens the way the pipeline estimates them (no charge)."""
    principal_from_request(request)
    body = json_object()
    runtime().catalog.resolve(_model(body))
    return jsonify({"input_tokens": count_tokens_for(body)})
