"""Small request-parsing helpers shared by the JSON views."""

from __future__ import annotations

from flask import request

from kyma.errors import InvalidRequest


def json_object() -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    if not request.data:
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    try:
        body = request.get_json(force=True, silent=False)
    except Exception as exc:  # werkzeug raises BadRequest with a parser message
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body

