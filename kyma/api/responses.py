"""POST /v1/responses, GET and DELETE /v1/responses/{id}: the OpenAI Responses API in front of the chat pipeline."""

from __future__ import annotations

import logging
import time

from flask import jsonify, request

from kyma import chat
from kyma.api import api_bp
from kyma.api.chat import json_response, new_call, serve
from kyma.api.credentials import principal_from_request
from kyma.api.parsing import json_object
from kyma.api.sse import KEEPALIVE, coalesced, sse_response
from kyma.errors import InvalidRequest, NotFound
from kyma.runtime import runtime
from kyma.services import responses_store
from kyma.translate.responses import (ResponsesStreamTranslator, Translated, chat_to_response, new_response,
                                      responses_to_chat_request)
from kyma.translate.responses_items import listed_items
from kyma.translate.responses_items import page as items_page

log = logging.getLogger(__name__)


@api_bp.post("/responses")
def create_response():
    """Create a model response, streamed or not (OpenAI Responses API)."""
    call = new_call("responses")
    translated: list[Translated] = []

    def read_body() -> dict:
        body = json_object()
        call.body = body  # a refused request is logged with the model it named
        previous = body.get("previous_response_id")
        history = None
        if previous is not None:
            if not isinstance(previous, str):
                raise InvalidRequest("'previous_response_id' must be a string.", param="previous_response_id")
            stored = responses_store.load(call.principal.account_id, previous)
            if stored is None:
                raise NotFound(f"Previous response with id '{previous}' not found.", param="previous_response_id")
            history = stored.conversation()
        t = responses_to_chat_request(body, history=history)
        if t.dropped:
            call.note = f"left out tools the gateway cannot run: {', '.join(t.dropped)}"[:200]
        translated.append(t)
        return t.chat

    outcome = serve(call, read_body)
    t = translated[0]
    keep = _keeper(call, t, runtime().settings.responses_retention_days)
    if isinstance(outcome, chat.Reply):
        response = chat_to_response(outcome.body, _base(t, call, outcome.body["model"]))
        keep(response)
        return json_response(response, outcome.headers)
    body = coalesced(_responses_sse(outcome, t, keep), outcome.more_ready)
    return sse_response(body, outcome.headers(), outcome.close)


def _responses_sse(stream: chat.ChatStream, t: Translated, keep):
    """Responses SSE framing; response.created waits for the first chunk, when the serving model is known."""
    call = stream.prep.call
    if not stream.ready:
        yield KEEPALIVE  # an SSE comment: commits the headers, ignored by every SDK
    translator = None
    for event in stream.events():
        if translator is None and isinstance(event, (chat.Chunk, chat.Done)):
            translator = ResponsesStreamTranslator(_base(t, call, stream.served.candidate.model.id))
        if isinstance(event, chat.Chunk):
            out = translator.feed(event.data)
            if out:
                yield b"".join(out)
        elif isinstance(event, chat.KeepAlive):
            yield KEEPALIVE
        elif isinstance(event, chat.Done):
            out = translator.finish(usage=event.usage, finish_reason=event.finish_reason, kyma=event.kyma)
            keep(translator.response)  # before the client hears of it: it may continue at once
            yield b"".join(out)
        elif isinstance(event, chat.Failed):
            # Before any chunk there is no translator yet; one on the requested model frames the error.
            translator = translator or ResponsesStreamTranslator(_base(t, call, t.chat["model"]))
            yield b"".join(translator.error(event.error))


def _base(t: Translated, call: chat.ChatCall, model: str) -> dict:
    return new_response(t.echo, response_id=f"resp_{call.request_id}", model=model, created_at=int(time.time()))


def _keeper(call: chat.ChatCall, t: Translated, retention_days: float):
    """What keeps the finished response when the client asked to (store defaults to true); settings are
    read now, since a stream finishes after the view has returned."""
    account = call.principal.account_id

    def keep(response: dict) -> None:
        if not t.store:
            return
        try:
            responses_store.save(account, response, t.items, retention_days)
        except Exception:  # the answer was served and billed: the client still gets it
            log.exception("could not store response %s", response.get("id"))

    return keep


def _stored(response_id: str) -> responses_store.Stored:
    """The caller's stored response with this id, or a 404 (another account's looks missing too)."""
    stored = responses_store.load(principal_from_request(request).account_id, response_id)
    if stored is None:
        raise NotFound(f"No response with id '{response_id}' found.", param="response_id")
    return stored


@api_bp.get("/responses/<response_id>")
def get_response(response_id: str):
    """A stored response of this account."""
    return jsonify(_stored(response_id).response)


@api_bp.get("/responses/<response_id>/input_items")
def list_input_items(response_id: str):
    """The input items of a stored response: the whole conversation the model saw, history included."""
    items = listed_items(_stored(response_id).input_items, response_id)
    args = request.args
    return jsonify(items_page(items, after=args.get("after"), limit=args.get("limit"), order=args.get("order")))


@api_bp.delete("/responses/<response_id>")
def delete_response(response_id: str):
    """Delete a stored response of this account."""
    principal = principal_from_request(request)
    if not responses_store.delete(principal.account_id, response_id):
        raise NotFound(f"No response with id '{response_id}' found.", param="response_id")
    return jsonify({"id": response_id, "object": "response.deleted", "deleted": True})
