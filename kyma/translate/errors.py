"""Errors in the Anthropic shape: {"type": "error", "error": {"type", "message"}}."""

from __future__ import annotations

from kyma.errors import KymaError

# Anthropic error type for each HTTP status the gateway can answer with.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 502: "api_error",
    503: "overloaded_error", 504: "api_error", 529: "overloaded_error",
}


def anthropic_error_body(err: KymaError) -> tuple[dict, int]:
    """The Anthropic error body and status for a gateway error (503 overloaded becomes 529)."""
    status = 529 if err.status == 503 else err.status
    kind = _ANTHROPIC_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": err.message}}, status
