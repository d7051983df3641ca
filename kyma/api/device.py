"""/v1/auth/device: device-code log-in for command-line tools (the OAuth device flow's two calls)."""

from __future__ import annotations

from flask import request

from kyma.api import api_bp
from kyma.api.auth import secret_response
from kyma.api.parsing import json_object
from kyma.errors import InvalidRequest
from kyma.hosts import public_url
from kyma.runtime import runtime
from kyma.services import device_login


def _body() -> dict:
    """The JSON object sent, or {} for an empty body (CLIs post nothing or `{}`)."""
    return json_object() if request.get_data(cache=True) else {}


@api_bp.post("/auth/device/code")
def device_code():
    """Start a device log-in: a device code to poll with and a user code to approve in the browser."""
    name = _body().get("client_name", "")
    # Control characters have no place in a name shown on a page (and PostgreSQL refuses NUL in text).
    if not isinstance(name, str) or len(name) > 100 or any(ch < " " or ch == "\x7f" for ch in name):
        raise InvalidRequest("'client_name' must be a string of at most 100 printable characters.",
                             param="client_name", code="invalid_type")
    code = device_login.start(name.strip(), runtime().settings, client_ip=request.remote_addr or "")
    page = f"{public_url()}/device"
    return secret_response({"device_code": code.device_code, "user_code": code.user_code,
                      "verification_url": page, "verification_uri": page,
                      "verification_uri_complete": f"{page}?code={code.user_code}",
                      "expires_in": code.expires_in, "interval": code.interval})


@api_bp.post("/auth/device/token")
def device_token():
    """Poll a device code: the new API key once approved, else the device flow's OAuth error (400), whatever went wrong."""
    try:
        device = _body().get("device_code")
        if not isinstance(device, str) or not device:
            raise device_login.DevicePollError("invalid_request", "'device_code' is required and must be a string.")
        issued = device_login.poll(device)
    except InvalidRequest as err:  # a body that is not JSON: still answered the way device-flow clients read
        return secret_response({"error": "invalid_request", "error_description": err.message}, 400)
    except device_login.DevicePollError as err:
        return secret_response({"error": err.error, "error_description": err.description}, 400)
    return secret_response({"access_token": issued.api_key, "token_type": "Bearer", "api_key_id": issued.api_key_id,
                      "user_id": str(issued.account_id), "email": issued.email})
