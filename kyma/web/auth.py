"""Sign-up, log-in and log-out pages; the browser keeps a `ks-` session token in its cookie."""

from __future__ import annotations

from flask import render_template, request, url_for

from kyma.errors import KymaError
from kyma.hosts import public_url
from kyma.runtime import runtime
from kyma.services import accounts
from kyma.web import htmx, web_bp
from kyma.web.identity import current_principal, login_required, safe_next, sign_in, sign_out


def _form_error(template: str, err: KymaError):
    # Same page again with the message; a failed log-in never says whether the email exists.
    page = render_template(template, error=err.message, email=request.form.get("email", ""),
                           next=request.form.get("next", ""))
    return page, err.status, err.headers  # e.g. Retry-After on a throttled log-in or sign-up


@web_bp.route("/signup", methods=["GET", "POST"])
def signup():
    """Create an account (with the signup credit and a first API key) and sign the browser in."""
    if request.method == "GET":
        return render_template("web/signup.html", next=request.args.get("next", ""))
    try:
        reg = accounts.register(request.form.get("email", ""), request.form.get("password", ""),
                                runtime().settings, client_ip=request.remote_addr or "")
    except KymaError as err:
        return _form_error("web/signup.html", err)
    sign_in(reg.session_token)
    return htmx.at_url(_welcome_page(reg.email, reg.api_key), 201, url_for("web.welcome"))


@web_bp.get("/welcome")
@login_required
def welcome():
    """The welcome page again (a reload after signing up): the key is not shown a second time."""
    return _welcome_page(current_principal().email, api_key=None)


def _welcome_page(email: str, api_key: str | None) -> str:
    return render_template("web/welcome.html", email=email, api_key=api_key, origin=public_url(),
                           default_model=runtime().catalog.default_model)


@web_bp.route("/login", methods=["GET", "POST"])
def login():
    """Log in with email and password."""
    if request.method == "GET":
        return render_template("web/login.html", next=request.args.get("next", ""))
    try:
        grant = accounts.login(request.form.get("email", ""), request.form.get("password", ""),
                               runtime().settings, client_ip=request.remote_addr or "")
    except KymaError as err:
        return _form_error("web/login.html", err)
    sign_in(grant.token)
    return htmx.redirect(safe_next(request.form.get("next")))


@web_bp.post("/logout")
def logout():
    """End the session server-side and forget the cookie."""
    token = sign_out()
    if token:
        accounts.logout(token)
    return htmx.redirect(url_for("web.landing"))
