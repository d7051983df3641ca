"""The account page: change the password, sign out other sessions, delete the account."""

from __future__ import annotations

from flask import render_template, request, url_for

from kyma.errors import KymaError
from kyma.runtime import runtime
from kyma.services import account_settings, accounts
from kyma.web import htmx, web_bp
from kyma.web.identity import current_principal, login_required, sign_out


def _page(status: int = 200, **context):
    principal = current_principal()
    sessions = account_settings.active_sessions(principal.account_id)
    return render_template("web/account.html", email=principal.email, other_sessions=max(0, sessions - 1),
                           **context), status


@web_bp.get("/account")
@login_required
def account():
    """The account page."""
    return _page()


@web_bp.post("/account/password")
@login_required
def change_password():
    """Set a new password (the current one confirms it); every other session ends with the old one."""
    principal = current_principal()
    try:
        ended = account_settings.change_password(
            principal.account_id, request.form.get("current_password", ""), request.form.get("new_password", ""),
            runtime().settings, keep_session_id=principal.session_id)
    except KymaError as err:
        return _page(err.status, password_error=err.message)
    return _page(notice=f"Password changed. {_sessions(ended)} signed out.")


@web_bp.post("/account/sessions")
@login_required
def end_other_sessions():
    """Sign out every session of this account except this browser's."""
    principal = current_principal()
    ended = account_settings.end_other_sessions(principal.account_id, principal.session_id)
    return _page(notice=f"{_sessions(ended)} signed out.")


@web_bp.post("/account/delete")
@login_required
def delete_account():
    """Delete the account after the password and the typed word confirm it."""
    principal = current_principal()
    if request.form.get("confirm", "").strip().lower() != "delete":
        return _page(400, delete_error="Type delete to confirm.")
    try:
        account_settings.delete_account(principal.account_id, request.form.get("password", ""))
    except KymaError as err:
        return _page(err.status, delete_error=err.message)
    token = sign_out()
    if token:
        accounts.logout(token)
    return htmx.redirect(url_for("web.landing"))


def _sessions(n: int) -> str:
    return "No other session was" if n == 0 else "1 other session was" if n == 1 else f"{n} other sessions were"
