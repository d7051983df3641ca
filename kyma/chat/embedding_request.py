"""Validation of an OpenAI embeddings request into a ChatRequest for the embeddings API."""

from __future__ import annotations

from kyma import tokens
from kyma.chat.request import GATEWAY_FIELDS, ChatRequest, Needs, _fail, _positive_int, _provider_prefs

MAX_INPUTS = 2048  # inputs per request, as OpenAI allows
ENCODINGS = ("float", "base64")
# Read by the gateway: vectors are asked for as floats, then truncated and encoded for the client.
LOCAL_FIELDS = frozenset({"dimensions", "encoding_format", "stream", "stream_options"})


def _token_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)


def input_sizes(value) -> list[int]:
    """Tokens of each input: a string, strings, a token array or token arrays; a 400 for anything else."""
    if isinstance(value, str):
        value = [value]
    elif _token_array(value):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail("'input' must be a non-empty string, an array of strings, a token array or an array of "
                    "token arrays.", "input", "missing_field" if value is None else "invalid_type")
    if len(value) > MAX_INPUTS:
        raise _fail(f"'input' may hold at most {MAX_INPUTS} inputs.", "input")
    sizes = []
    for i, item in enumerate(value):
        if isinstance(item, str) and item:
            sizes.append(max(1, tokens.count_text(item)))
        elif _token_array(item):
            sizes.append(len(item))
        else:
            raise _fail(f"input[{i}] must be a non-empty string or a non-empty array of token ids "
                        f"(and every input of one kind).", f"input[{i}]")
    if len({isinstance(item, str) for item in value}) > 1:
        raise _fail("'input' mixes strings and token arrays.", "input")
    return sizes


def parse_embedding_request(body: dict) -> ChatRequest:
    """Validate an OpenAI embeddings body; raise InvalidRequest naming the offending param."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _fail("'model' is required (an embedding model from GET /v1/models?kind=embedding).", "model",
                    "missing_field")
    sizes = input_sizes(body.get("input"))
    if body.get("stream") not in (None, False):
        raise _fail("Embeddings are not streamed: leave out 'stream'.", "stream")
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        raise _fail("'encoding_format' must be float or base64.", "encoding_format")
    dimensions = _positive_int(body, "dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _fail("'user' must be a string.", "user")
    upstream = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS and k not in LOCAL_FIELDS}
    upstream["encoding_format"] = "float"
    return ChatRequest(
        model=model, messages=[], stream=False, client_wants_usage=False, max_tokens=None, needs=Needs(),
        fallback_models=(), provider=_provider_prefs(body.get("provider")), upstream_body=upstream,
        api="embeddings", input_tokens=sum(sizes), longest_input=max(sizes), dimensions=dimensions)
