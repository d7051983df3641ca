"""The gateway's exception tree; each API boundary maps it once to its protocol's error shape."""

from __future__ import annotations


class KymaError(Exception):
    """Base of every error a client may see. Carries the HTTP status and OpenAI-style type/code."""

    status = 500
    type = "api_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})

    def to_openai(self) -> dict:
        """The OpenAI envelope: {"error": {"message", "type", "code", "param"}}."""
        body = {"message": self.message, "type": self.type, "code": self.code}
        if self.param is not None:
            body["param"] = self.param
        return {"error": body}


class InternalError(KymaError):
    """A fault of the gateway's own (a bug, a failed write), not of the request: the client may retry."""

    status = 500
    type = "api_error"
    code = "internal_error"


class InvalidRequest(KymaError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    """The input does not fit the model's context window (the code OpenAI's API and its SDKs use)."""

    code = "context_length_exceeded"


class AuthenticationFailed(KymaError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(KymaError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class AccountSuspended(PermissionDenied):
    code = "account_suspended"


class NotFound(KymaError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(KymaError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(KymaError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class InsufficientCredits(KymaError):
    status = 402
    type = "insufficient_credits"
    code = "insufficient_credits"


class RateLimited(KymaError):
    status = 429
    type = "rate_limit"
    code = "rate_limit_exceeded"


class UpstreamError(KymaError):
    """Every route failed before the first byte; status is 502, 503/529 (overloaded) or 504."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"

    @classmethod
    def in_band(cls, error) -> "UpstreamError":
        """An error object a chat stream carried mid-stream (OpenAI's {"message": ...}, or anything)."""
        message = error.get("message") if isinstance(error, dict) else str(error)
        return cls(message or "The upstream provider failed mid-stream.")


class Overloaded(UpstreamError):
    status = 503
    type = "overloaded_error"
    code = "overloaded"


class GatewayBusy(KymaError):
    """Every database connection of this worker stayed in use past the pool's wait."""

    status = 503
    type = "overloaded_error"
    code = "gateway_busy"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"
