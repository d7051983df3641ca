"""HTML pages, htmx fragments and the playground websocket (blueprint `web`)."""

from __future__ import annotations

from flask import Blueprint, Flask, render_template, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from kyma.errors import KymaError

web_bp = Blueprint("web", __name__)

# Importing the view modules attaches their routes to web_bp.
from kyma.web import auth, dashboard, pages, playground  # noqa: E402,F401
from kyma.web import account, device  # noqa: E402,F401
from kyma.web import csrf, htmx  # noqa: E402
from kyma.web import money  # noqa: E402
from kyma.web.identity import current_principal  # noqa: E402

# 'self' covers same-origin ws:// and wss:// in current browsers; no inline script anywhere.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'; "
                           "object-src 'none'")

HSTS = "max-age=31536000"  # one year; sent only over https, where the browser will honour it


class _SessionInterface(SecureCookieSessionInterface):
    """Mark the session cookie Secure when the request came over https (or when configured)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure

    def open_session(self, app: Flask, request):
        # The JSON API authenticates with keys, never with the cookie: skip reading it there.
        if request.path.startswith("/v1/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


@web_bp.before_request
def _check_csrf():
    csrf.protect()


@web_bp.after_request
def _security_headers(resp):
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    # Not no-referrer: under it Chromium sends `Origin: null` on same-origin form posts, which the CSRF
    # Origin check must refuse. same-origin still never sends a referrer to another site.
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    if resp.mimetype == "text/html":
        resp.headers.setdefault("Cache-Control", "no-store")
    if request.is_secure:
        resp.headers.setdefault("Strict-Transport-Security", HSTS)
    return resp


def _error_page(status: int, title: str, message: str):
    """A full error page, or for htmx a message swapped into the page's #flash area."""
    if htmx.is_htmx():
        body = render_template("errors/_flash.html", title=title, message=message)
        return htmx.retarget(body, status, "#flash", select="[role=alert]")
    return render_template("errors/error.html", status=status, title=title, message=message), status


@web_bp.errorhandler(KymaError)
def _kyma_error(err: KymaError):
    return _error_page(err.status, "Something went wrong", err.message)


@web_bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return _error_page(exc.code or 500, exc.name, exc.description or exc.name)


def register_web(app: Flask) -> None:
    """Attach the web blueprint, the session cookie policy and the template helpers."""
    app.session_interface = _SessionInterface()
    app.register_blueprint(web_bp)
    from kyma.web.admin import register_admin

    register_admin(app)
    app.jinja_env.globals.update(csrf_token=csrf.csrf_token, current_principal=current_principal)
    app.jinja_env.filters.update(usd=money.usd, usd_price=money.usd_price)
