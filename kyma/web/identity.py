"""Who is browsing: the `ks-` session token kept in Flask's signed, HttpOnly cookie."""

from __future__ import annotations

from functools import wraps

from flask import g, request, session, url_for

from kyma.errors import AuthenticationFailed
from kyma.services import accounts
from kyma.services.accounts import Principal

TOKEN_KEY = "kst"


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
            except AuthenticationFailed:
                session.pop(TOKEN_KEY, None)
        g.principal = principal
    return g.principal


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
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("web.dashboard")
