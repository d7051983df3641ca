"""OpenAI-shaped error responses the simulator sends (for faults and bad requests)."""

from __future__ import annotations

import json

from flask import Response


class SimRequestError(Exception):
    """A request the simulated provider rejects, rendered as an OpenAI error body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def response(self, headers: dict | None = None) -> Response:
        """The JSON error response."""
        return error_response(self.status, self.message, self.type, self.code, self.param, headers)


def error_response(status: int, message: str, type_: str, code: str | None = None,
                   param: str | None = None, headers: dict | None = None) -> Response:
    """`{"error": {message, type, param, code}}` with the given status."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers or {})


# The HTTP-level faults: status, message, type, code, extra headers.
STATUS_FAULTS = {
    "429": (429, "Rate limit reached for requests on this simulated provider. Please try again in 1s.",
            "requests", "rate_limit_exceeded", {"Retry-After": "1", "retry-after-ms": "1000"}),
    "500": (500, "The simulated provider had an internal error while processing your request.",
            "server_error", None, {}),
    "502": (502, "Bad gateway: the simulated provider's backend did not answer.", "server_error", None, {}),
    "503": (503, "The simulated provider is overloaded. Please try again later.", "server_error",
            "service_unavailable", {}),
}


def context_length_error(window: int, prompt_tokens: int) -> SimRequestError:
    """OpenAI's 400 for a prompt longer than the model's context window."""
    return SimRequestError(
        400, f"This model's maximum context length is {window} tokens. However, your messages "
             f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
        "invalid_request_error", "context_length_exceeded", "messages")
