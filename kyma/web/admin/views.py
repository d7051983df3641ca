"""The console's pages: each concern in its own module, imported here so their routes attach."""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for

from kyma.services import audit
from kyma.web.admin import admin_bp


def page_number() -> int:
    """?page=, 1 or more (a 400 otherwise)."""
    number = request.args.get("page", 1, type=int)
    if number < 1 or number > 10_000:
        abort(400, description="The page number must be between 1 and 10000.")
    return number


@admin_bp.get("")
def index():
    """The console starts at the accounts."""
    return redirect(url_for("admin.accounts"), 303)


@admin_bp.get("/audit")
def audit_log():
    """Every admin action, newest first, paged."""
    return render_template("admin/audit.html", log=audit.page(page_number()), changes=audit.changes)


from kyma.web.admin import accounts, routes, traffic  # noqa: E402,F401
