"""JSON API under /v1: one blueprint, one error mapping per protocol."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify, request
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException

from kyma.errors import InternalError, KymaError

api_bp = Blueprint("api", __name__, url_prefix="/v1")

# Importing the view modules attaches their routes to api_bp.
from kyma.api import auth, catalog, chat, credits, discovery, messages, responses  # noqa: E402,F401
from kyma.api import completions, embeddings  # noqa: E402,F401
from kyma.api import device  # noqa: E402,F401
from kyma.api.failures import gateway_busy, internal_error  # noqa: E402
from kyma.api.refusals import masked, record_refusal  # noqa: E402

_HTTP_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
    415: "invalid_request_error", 429: "rate_limit",
}


def _is_api_request() -> bool:
    return request.path == "/v1" or request.path.startswith("/v1/")


def _is_anthropic_request() -> bool:
    """Messages, and the model list as an Anthropic SDK asks for it (with anthropic-version)."""
    return request.path.startswith("/v1/messages") or (
        request.path.startswith("/v1/models") and "anthropic-version" in request.headers)


def error_response(err: KymaError):
    """Render a KymaError in the shape of the protocol the request spoke."""
    if _is_anthropic_request():
        from kyma.translate.errors import anthropic_error_body

        body, status = anthropic_error_body(err)
    else:
        body, status = err.to_openai(), err.status
    resp = jsonify(body)
    resp.status_code = status
    for name, value in err.headers.items():
        resp.headers[name] = value
    return resp


def register_api_errors(app: Flask) -> None:
    """Map KymaError and HTTP errors under /v1 to JSON; pages keep HTML errors."""

    @app.errorhandler(KymaError)
    def _kyma_error(err: KymaError):
        return error_response(err)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if not _is_api_request():
            return exc
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.code, "http_error")
        message = exc.description or exc.name
        if exc.code == 404:
            message = f"No route for {request.method} {request.path}."
        elif exc.code == 405:
            message = f"Method {request.method} is not allowed on {request.path}."
        # A key pasted into a path is neither echoed nor logged.
        err = KymaError(masked(message), code=code, status=exc.code)
        err.type = _HTTP_TYPES.get(exc.code, "api_error")
        err.headers["X-Request-Id"] = record_refusal(exc.code or 500, err.message, err.code)
        resp = error_response(err)
        # Keep Allow (405) and other headers werkzeug computed.
        for name, value in exc.get_response().headers.items():
            if name.lower() not in ("content-type", "content-length"):
                resp.headers[name] = value
        return resp

    @app.errorhandler(RecursionError)
    def _too_deep(exc: RecursionError):
        # Only input makes the code recurse that deep: a body nested past what it can follow.
        if not _is_api_request():
            raise exc
        from kyma.api.parsing import too_deep

        err = too_deep()
        err.headers["X-Request-Id"] = record_refusal(err.status, err.message, err.code)
        return error_response(err)

    @app.errorhandler(MaxConnectionsExceeded)
    def _busy(exc: MaxConnectionsExceeded):
        # A full pool is load, not a fault: the client may retry at once, and the request's log rows
        # (and the release of a hold it took) are written once a connection is free.
        if not _is_api_request():
            raise exc
        app.logger.warning("database pool exhausted on %s %s", request.method, request.path)
        return error_response(gateway_busy())

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, HTTPException) or not _is_api_request():
            raise exc
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        try:
            err = internal_error()
        except Exception:  # the database may be what failed: the client still gets its 500
            app.logger.exception("could not log the failed request on %s %s", request.method, request.path)
            err = InternalError("Internal error.")
        return error_response(err)
