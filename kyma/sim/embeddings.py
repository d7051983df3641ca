"""Deterministic embeddings: each input's vector comes from a hash of the model and the input, unit length.

The same model and input give the same vector on every simulated provider (so a fallback between
providers of one model changes nothing); the length is the catalog's `dimensions` for the model.
"""

from __future__ import annotations

import array
import base64
import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path

from kyma.sim.errors import SimRequestError
from kyma.tokens import count_text

CATALOG = Path(__file__).resolve().parent.parent / "data" / "catalog.json"
DEFAULT_DIMENSIONS = 1024  # for a model the shipped catalog does not list


@lru_cache(maxsize=1)
def catalog_dimensions() -> dict[str, int]:
    """Model id → dimensions of the shipped catalog's embedding models."""
    try:
        models = json.loads(CATALOG.read_text())["models"]
    except (OSError, ValueError, KeyError):
        return {}
    return {m["id"]: int(m["dimensions"]) for m in models if m.get("kind") == "embedding" and m.get("dimensions")}


def inputs(value) -> list:
    """The request's inputs as a list (strings or token arrays); a 400 as a provider would send it."""
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(t, int) for t in value)):
        value = [value]
    if not isinstance(value, list) or not value or not all(
            (isinstance(v, str) and v) or (isinstance(v, list) and v and all(isinstance(t, int) for t in v))
            for v in value):
        raise SimRequestError(400, "'input' must be a non-empty string, array of strings or token arrays.",
                              param="input")
    return value


def tokens_of(item) -> int:
    """Tokens one input costs, as the gateway counts them."""
    return max(1, count_text(item)) if isinstance(item, str) else len(item)


def vector(model: str, item, dimensions: int) -> list[float]:
    """The unit vector for one input: 16-bit values from SHAKE-256 of (model, input), normalised."""
    seed = json.dumps([model, item], ensure_ascii=False).encode()
    values = array.array("h", hashlib.shake_256(seed).digest(2 * dimensions))
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embeddings_body(body: dict, provider: str) -> dict:
    """The OpenAI `list` of embeddings for a request body (honours `dimensions` and `encoding_format`)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise SimRequestError(400, "you must provide a model parameter", param="model")
    items = inputs(body.get("input"))
    dimensions = catalog_dimensions().get(model, DEFAULT_DIMENSIONS)
    asked = body.get("dimensions")
    if asked is not None:
        if not isinstance(asked, int) or isinstance(asked, bool) or not 1 <= asked <= dimensions:
            raise SimRequestError(400, f"'dimensions' must be from 1 to {dimensions}.", param="dimensions")
    encoding = body.get("encoding_format") or "float"
    data = []
    for i, item in enumerate(items):
        vec = vector(model, item, dimensions)
        if asked is not None and asked < dimensions:
            norm = math.sqrt(sum(x * x for x in vec[:asked])) or 1.0
            vec = [x / norm for x in vec[:asked]]
        out = base64.b64encode(array.array("f", vec).tobytes()).decode() if encoding == "base64" else vec
        data.append({"object": "embedding", "index": i, "embedding": out})
    used = sum(tokens_of(item) for item in items)
    return {"object": "list", "data": data, "model": model, "provider": provider,
            "usage": {"prompt_tokens": used, "total_tokens": used}}
