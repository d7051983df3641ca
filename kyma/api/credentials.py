"""Who is calling: the credential on a /v1 request, resolved afresh on every request."""

from __future__ import annotations

from functools import wraps

from flask import g, request as flask_request

from kyma.errors import AuthenticationFailed
from kyma.runtime import runtime
from kyma.services.accounts import Principal, authenticate

MISSING = ("Missing API key. Send it as 'Authorization: Bearer ky-…' (or 'x-api-key: ky-…'); "
           "create one with POST /v1/auth/register.")


def presented_credential(request) -> str | None:
    """The key or token from `Authorization: Bearer …`, else from `x-api-key`, else None."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = request.headers.get("x-api-key", "").strip()
    return api_key or None


def principal_from_request(request) -> Principal:
    """Authenticate the request's credential; 401 (same answer for any unknown key) otherwise."""
    credential = presented_credential(request)
    if credential is None:
        raise AuthenticationFailed(MISSING, code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
    return authenticate(credential, runtime().settings)


def current_principal() -> Principal:
    """The current request's principal, authenticated once per request (kept on flask.g only)."""
    if "kyma_principal" not in g:
        g.kyma_principal = principal_from_request(flask_request)
    return g.kyma_principal


def require_principal(view):
    """Decorator: a view that answers 401 unless the request carries a valid key or session."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        current_principal()
        return view(*args, **kwargs)

    return wrapper
