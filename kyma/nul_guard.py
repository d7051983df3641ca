"""Refuse a NUL in a request's path, query string or form fields, before any view reads them.

No client has a reason to send one there, and a view that filters or stores such a value fails on
PostgreSQL (which refuses NUL in text). JSON bodies are not scanned: the few of their fields that are
stored are checked where they are parsed, and the request log replaces a NUL it is given.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import BadRequest, NotFound

from kyma.errors import InvalidRequest
from kyma.nul import NUL, kept

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def register_nul_guard(app: Flask) -> None:
    """Check every request, after the hooks registered before it (the console's 404 to strangers)."""
    app.before_request(refuse_nul)


def refuse_nul() -> None:
    """A 404 for a path with a NUL; a 400, in the shape the route answers errors in, for a field with one."""
    path = request.path  # once: every read goes through the request proxy, on every request
    if NUL in path:
        raise NotFound()  # no resource is named with a NUL: answered (and logged) as any unknown path
    api = path == "/v1" or path.startswith("/v1/")
    found = _field_with_nul(api)
    if found is None:
        return
    where, name = found
    message = f"The {where} '{name}' contains a NUL character (U+0000), which the gateway does not accept."
    err = InvalidRequest(message, param=name, code="nul_character")
    if api:
        from kyma.api.refusals import record_refusal

        err.headers["X-Request-Id"] = record_refusal(err.status, message, err.code)
        raise err
    if request.blueprint:  # the pages and the console render it as they render their other 400s
        raise err
    raise BadRequest(message)


def _field_with_nul(api: bool) -> tuple[str, str] | None:
    """The first query parameter or form field whose name or value holds a NUL, as (its kind, its name)."""
    query = request.query_string
    # %00 (or a raw NUL) is the only way a query string decodes to a NUL.
    if (b"%00" in query or b"\x00" in query) and (name := _with_nul(request.args)) is not None:
        return "query parameter", name
    # Not under /v1: the API reads raw bodies, and parsing one as a form would swallow it.
    if not api and request.mimetype in _FORMS and (name := _with_nul(request.form)) is not None:
        return "form field", name
    return None


def _with_nul(fields) -> str | None:
    """The name of the first field whose name or value holds a NUL (a NUL in it replaced), or None."""
    for name, value in fields.items(multi=True):
        if NUL in name or NUL in value:
            return kept(name)
    return None
