"""Request-log rows for requests refused before any view took them: unknown routes, wrong methods, too large.

The chat pipeline logs what it refuses itself; these are the HTTP errors routing and body reading
raise under /v1. Such a request has no account (credentials are not read for it), and the path it
asked for is logged with anything shaped like a key or a session token masked.
"""

from __future__ import annotations

import re

from flask import request

from kyma import strict_json
from kyma.api.request_ids import request_id
from kyma.services.recording import RequestRecord, record_unheld

# The pipeline's endpoint names, so that a refusal at routing files under the same name as the rest.
_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/messages": "messages", "/v1/completions": "completions",
              "/v1/embeddings": "embeddings", "/v1/responses": "responses"}
_CREDENTIAL = re.compile(r"k[ys]-[A-Za-z0-9_-]+")
_SNIFF_LIMIT = 64 * 1024  # a larger body is not read for its model name


def record_refusal(status: int, message: str, code: str | None = None, *, later: bool = False) -> str:
    """Log a refused request and return its request id (for X-Request-Id); `later` queues the write
    (every database connection is in use)."""
    rid = request_id(request.headers.get("X-Request-Id"))
    endpoint = _ENDPOINTS.get(request.path.rstrip("/")) or (
        "unknown" if request.url_rule is None else (request.endpoint or "unknown").removeprefix("api."))
    model = "" if status == 413 else model_asked()  # a body over the limit is not read at all
    record = RequestRecord(request_id=rid, endpoint=endpoint, status=status, model_requested=model,
                           error=masked(message), error_code=code)  # refused at once: no latency worth measuring
    record_unheld(record, later=later)
    return rid


def masked(text: str) -> str:
    """`text` with anything shaped like a key or a session token replaced."""
    return _CREDENTIAL.sub("k?-***", text)


def model_asked() -> str:
    """The "model" of a small JSON body, when it has one (a refused request's log row still names it)."""
    if not request.content_length or request.content_length > _SNIFF_LIMIT:
        return ""
    try:
        body = strict_json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError):
        return ""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else ""
