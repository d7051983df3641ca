"""Embedding vectors at the edges: read an upstream's list, truncate and renormalise, encode as base64."""

from __future__ import annotations

import base64
import math
import struct


def upstream_vectors(body: dict) -> list[list[float]]:
    """The vectors of an upstream embeddings answer, in input order (float lists or base64 float32).

    Raises ValueError when the answer is not a list of embeddings.
    """
    data = body.get("data")
    if not isinstance(data, list) or not data:
        raise ValueError("an embeddings answer without data")
    out: list[list[float] | None] = [None] * len(data)
    for pos, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError("an embedding that is not an object")
        index = item.get("index", pos)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(data) or out[index]:
            raise ValueError("embeddings with bad indexes")
        out[index] = _vector(item.get("embedding"))
    return out  # type: ignore[return-value]


def _vector(raw) -> list[float]:
    if isinstance(raw, str):
        packed = base64.b64decode(raw, validate=True)
        if not packed or len(packed) % 4:
            raise ValueError("a base64 embedding that is not float32s")
        return list(struct.unpack(f"<{len(packed) // 4}f", packed))
    if not isinstance(raw, list) or not raw or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in raw):
        raise ValueError("an embedding that is not a list of numbers")
    return [float(x) for x in raw]


def truncated(vector: list[float], dimensions: int | None) -> list[float]:
    """The first `dimensions` values renormalised to unit length (Matryoshka truncation); as is without."""
    if dimensions is None or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm > 0 else head


def encoded(vector: list[float], encoding_format: str) -> list[float] | str:
    """The vector as the client asked: floats, or base64 of little-endian float32s (what the SDKs decode)."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def embedding_list(vectors: list[list[float]], model: str, usage: dict, *, dimensions: int | None,
                   encoding_format: str) -> dict:
    """The OpenAI `list` of embeddings the client gets."""
    return {"object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": encoded(truncated(v, dimensions), encoding_format)}
                     for i, v in enumerate(vectors)],
            "model": model, "usage": usage}
