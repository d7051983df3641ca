"""What differs between the APIs the pipeline serves (chat, legacy completions, embeddings).

The endpoint decides: how its body is read, which model kind serves it, what it checks on the model,
and the upstream path (the adapter's `api`). Everything else (plan, admit, hold, attempts, settle,
record) is the one pipeline.
"""

from __future__ import annotations

from kyma.chat.completion_request import parse_completion_request
from kyma.chat.embedding_request import parse_embedding_request
from kyma.chat.request import ChatRequest, parse_chat_request
from kyma.errors import InvalidRequest
from kyma.providers.routes import Route
from kyma.services.catalog import CHAT, EMBEDDING, ModelInfo, require_kind

_PARSERS = {"embeddings": parse_embedding_request, "completions": parse_completion_request}
# The param that holds each API's input, and the one a missing capability is reported on.
INPUT_PARAMS = {"chat": "messages", "completions": "prompt", "embeddings": "input"}
CAPABILITY_PARAMS = {"tool calling": "tools", "fill-in-the-middle (suffix)": "suffix"}


def parse_request(endpoint: str, body: dict) -> ChatRequest:
    """The endpoint's body, validated; chat for every endpoint that speaks chat."""
    return _PARSERS.get(endpoint, parse_chat_request)(body)


def check_model(model: ModelInfo, req: ChatRequest, routes: tuple[Route, ...]) -> None:
    """A 400 when the model cannot serve this API: the wrong kind, no route for it, a dimension it lacks."""
    require_kind(model, EMBEDDING if req.api == "embeddings" else CHAT)
    if req.api == "completions" and not any(r.completions for r in routes):
        raise InvalidRequest(f"'{model.id}' is not served on /v1/completions by any configured provider; use "
                             f"POST /v1/chat/completions, or a model whose providers offer completions.",
                             param="model", code="completions_unsupported")
    if req.dimensions is not None and req.dimensions != model.dimensions:
        if not model.min_dimensions:
            raise InvalidRequest(f"'{model.id}' returns {model.dimensions} dimensions and cannot be truncated; "
                                 f"omit 'dimensions' or use a model with supports_dimensions.",
                                 param="dimensions", code="dimensions_unsupported")
        if not model.min_dimensions <= req.dimensions <= model.dimensions:
            raise InvalidRequest(f"'dimensions' must be from {model.min_dimensions} to {model.dimensions} for "
                                 f"'{model.id}'.", param="dimensions", code="invalid_request")
