"""Small request-parsing helpers shared by the JSON views."""

from __future__ import annotations

import json

from flask import request

from kyma import strict_json
from kyma.errors import InvalidRequest


def json_object() -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it.

    The raw body is parsed whatever the Content-Type says (curl -d sends a form type), without
    werkzeug's form parsing, which would swallow such a body and costs time on every request.
    """
    raw = request.get_data(cache=True)  # MAX_CONTENT_LENGTH still applies (a 413 past it)
    if not raw:
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    try:
        body = strict_json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from exc
    except ValueError as exc:  # JSON that the gateway cannot carry (NaN, a lone surrogate, …)
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", code="invalid_json") from exc
    except RecursionError:
        raise too_deep() from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def too_deep() -> InvalidRequest:
    """The 400 for a body nested deeper than the parser (or the code reading it) can follow."""
    return InvalidRequest("The request body is nested too deeply.", code="nested_too_deeply")
