"""POST /v1/embeddings: the OpenAI Embeddings API in front of the one pipeline."""

from __future__ import annotations

from kyma import chat
from kyma.api import api_bp
from kyma.api.chat import json_response, new_call, serve
from kyma.api.parsing import json_object
from kyma.translate.embeddings import embedding_list


@api_bp.post("/embeddings")
def create_embeddings():
    """Embed one or more inputs; vectors truncated to `dimensions` and encoded as `encoding_format`."""
    raw: dict = {}

    def read_body() -> dict:
        raw.update(json_object())
        return raw

    reply: chat.Reply = serve(new_call("embeddings"), read_body)  # embeddings are never streamed
    body = reply.body
    dimensions = raw.get("dimensions")  # validated against the model by the pipeline
    out = embedding_list(body["data"], body["model"], body["usage"],
                         dimensions=None if dimensions is None else int(dimensions),
                         encoding_format=raw.get("encoding_format") or "float")
    return json_response(out, reply.headers)
