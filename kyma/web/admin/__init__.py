"""The operator's console under /admin (blueprint `admin`): a 404 to everyone but admins."""

from __future__ import annotations

from flask import Blueprint, Flask, abort, request

from kyma.errors import KymaError
from kyma.web import _error_page, _security_headers, csrf
from kyma.web.identity import current_principal

PREFIX = "/admin"
admin_bp = Blueprint("admin", __name__, url_prefix=PREFIX)


def is_admin_path(path: str) -> bool:
    """True for /admin and everything under it."""
    return path == PREFIX or path.startswith(PREFIX + "/")


@admin_bp.before_app_request
def _guard():
    # An app-wide hook, so an unknown /admin URL or a method no view takes is refused the same way
    # (routing errors surface after this): to anyone else the console does not exist.
    if not is_admin_path(request.path):
        return
    who = current_principal()
    if who is None or not who.is_admin:
        abort(404)
    csrf.protect()  # after the guard: a stranger's POST learns nothing from a 403


@admin_bp.after_app_request
def _headers(resp):
    # For every /admin URL, known or not, so a refusal's headers do not tell which ones exist.
    return _security_headers(resp) if is_admin_path(request.path) else resp


def actor() -> str:
    """Who the audit log names for an action in this request."""
    return current_principal().email


@admin_bp.app_template_filter("epoch_utc")
def epoch_utc(epoch: float) -> str:
    """Epoch seconds as 'YYYY-MM-DD HH:MM:SS UTC'."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# Importing the view modules attaches their routes to admin_bp.
from kyma.web.admin import views  # noqa: E402,F401


@admin_bp.errorhandler(KymaError)
def _kyma_error(err: KymaError):
    return _error_page(err.status, "Not done", err.message)


def register_admin(app: Flask) -> None:
    """Attach the console's blueprint."""
    app.register_blueprint(admin_bp)
