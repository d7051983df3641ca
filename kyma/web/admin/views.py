"""The console's pages: each concern in its own module, imported here so their routes attach."""

from __future__ import annotations

from flask import redirect, render_template, url_for

from kyma.services import audit
from kyma.web.admin import admin_bp
from kyma.web.admin.paging import page_number


@admin_bp.get("")
def index():
    """The console starts at the accounts."""
    return redirect(url_for("admin.accounts"), 303)


@admin_bp.get("/audit")
def audit_log():
    """Every admin action, newest first, paged."""
    return render_template("admin/audit.html", log=audit.page(page_number()), changes=audit.changes)


from kyma.web.admin import accounts, routes, traffic  # noqa: E402,F401
