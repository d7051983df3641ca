"""The verification page of the device log-in: a signed-in user approves or denies a CLI's code."""

from __future__ import annotations

from flask import render_template, request

from kyma.errors import NotFound
from kyma.services import device_login
from kyma.web import web_bp
from kyma.web.identity import current_principal, login_required


@web_bp.route("/device", methods=["GET", "POST"])
@login_required
def device():
    """GET ?code=… shows the pending log-in; POST approves or denies it (CSRF-checked like every form)."""
    principal = current_principal()
    code = (request.form if request.method == "POST" else request.args).get("code", "")
    if not code:
        return render_template("web/device.html", code="")
    try:
        if request.method == "POST":
            approve = request.form.get("decision") == "approve"
            device_login.decide(code, principal.account_id, approve=approve)
            return render_template("web/device.html", outcome="approved" if approve else "denied")
        pending = device_login.pending(code)
    except NotFound as err:
        return render_template("web/device.html", code=code, error=err.message), 404
    return render_template("web/device.html", pending=pending, email=principal.email)
