"""CSRF protection: one random token per browser session, required on every unsafe web request."""

from __future__ import annotations

import hmac
import secrets

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


def token_matches(presented: str | None) -> bool:
    """Constant-time check of a presented token against the session's."""
    expected = session.get(SESSION_KEY)
    return bool(expected and presented) and hmac.compare_digest(expected, presented)


def protect() -> None:
    """before_request hook: refuse unsafe methods without the session's token (403)."""
    if request.method in SAFE_METHODS:
        return
    presented = request.headers.get(HEADER) or request.form.get(FORM_FIELD)
    if not token_matches(presented):
        abort(403, description="The form was stale or did not come from this site. Reload the page and try again.")
