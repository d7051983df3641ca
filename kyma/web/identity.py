"""Who is browsing: the `ks-` session token kept in Flask's signed, HttpOnly cookie."""

from __future__ import annotations

import re
from functools import wraps
from urllib.parse import urlsplit

from flask import g, request, session, url_for

from kyma.errors import AccountSuspended, AuthenticationFailed
from kyma.services import accounts
from kyma.services.accounts import Principal

TOKEN_KEY = "kst"
# Browsers and Werkzeug drop or rewrite these (a tab in "/\t/evil.com" vanishes, leaving "//evil.com").
_UNSAFE_IN_NEXT = re.compile(r"[\x00-\x20\x7f-\x9f\\]|\s")


def sign_in(token: str) -> None:
    """Remember a fresh session token; a new cookie value on sign-in defeats session fixation."""
    session.clear()
    session[TOKEN_KEY] = token
    session.permanent = True


def sign_out() -> str | None:
    """Forget the browser's session; returns the token so the caller can end it server-side."""
    token = session.get(TOKEN_KEY)
    session.clear()
    return token


def current_principal() -> Principal | None:
    """The signed-in account, or None (an expired or revoked token signs the browser out)."""
    if "principal" not in g:
        token = session.get(TOKEN_KEY)
        principal = None
        if token:
            try:
                principal = accounts.authenticate(token)
            except (AuthenticationFailed, AccountSuspended):  # a suspended account is signed out
                session.pop(TOKEN_KEY, None)
        g.principal = principal
    return g.principal


def fresh_principal() -> Principal | None:
    """Re-check the session token now: a long-lived websocket must notice log-out and expiry."""
    g.pop("principal", None)
    return current_principal()


def login_required(view):
    """Send anonymous visitors to the log-in page, then back where they were going."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if current_principal() is None:
            from kyma.web import htmx

            return htmx.redirect(url_for("web.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after log-in (no open redirect)."""
    if target and not _UNSAFE_IN_NEXT.search(target) and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("web.dashboard")
