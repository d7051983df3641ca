"""CSRF protection: one random token per browser session, required on every unsafe web request."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import abort, request, session

SESSION_KEY = "csrf"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token() -> str:
    """The session's CSRF token, created on first use (templates put it in forms and hx-headers)."""
    token = session.get(SESSION_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[SESSION_KEY] = token
    return token


def token_matches(presented: object) -> bool:
    """Constant-time check of a presented token against the session's (anything but a string is a mismatch)."""
    expected = session.get(SESSION_KEY)
    if not isinstance(expected, str) or not isinstance(presented, str) or not expected or not presented:
        return False
    # Bytes, not str: compare_digest refuses non-ASCII str with a TypeError.
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "surrogatepass"))


def same_origin(referer: bool = True) -> bool:
    """True when Origin (or, lacking it and if allowed, Referer) names this very host.

    Browsers send one of them on unsafe requests, and Origin on every websocket handshake.
    """
    source = request.headers.get("Origin") or (request.headers.get("Referer") if referer else None)
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and parts.netloc == request.host


def protect() -> None:
    """before_request hook: refuse unsafe methods without a same-origin source and the session's token (403)."""
    if request.method in SAFE_METHODS:
        return
    if not same_origin():
        abort(403, description="The request did not come from this site. Reload the page and try again.")
    presented = request.headers.get(HEADER) or request.form.get(FORM_FIELD)
    if not token_matches(presented):
        abort(403, description="The form was stale or did not come from this site. Reload the page and try again.")
