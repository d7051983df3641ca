"""Console pages for accounts: search, one account, and the actions on it."""

from __future__ import annotations

import secrets

from flask import request

from kyma.errors import InvalidRequest
from kyma.runtime import runtime
from kyma.services import admin_accounts
from kyma.services.periods import PERIODS, period
from kyma.web import htmx
from kyma.web.admin import actor, admin_bp


@admin_bp.get("/accounts")
def accounts():
    """Accounts whose email contains ?q=, newest first (htmx swaps the results as one types)."""
    q = request.args.get("q", "")[:254]
    return htmx.render("admin/accounts.html", "admin/_account_rows.html", target="account-results",
                       q=q, rows=admin_accounts.search(q))


def _detail_page(account_id: int, message: str = "", status: int = 200):
    info = admin_accounts.detail(account_id, period(request.values.get("range")))
    resp = htmx.render("admin/account.html", "admin/_account.html", target="account", info=info,
                       periods=PERIODS.values(), tiers=runtime().tiers.tiers, message=message,
                       idempotency_key=secrets.token_urlsafe(16))
    resp.status_code = status
    return resp


@admin_bp.get("/accounts/<row_id:account_id>")
def account(account_id: int):
    """One account: balance, tier, spend over ?range=, keys, last activity, and the actions."""
    return _detail_page(account_id)


@admin_bp.post("/accounts/<row_id:account_id>/credit")
def grant_credit(account_id: int):
    """Grant credit through the ledger; the form's idempotency key makes a double submit grant once."""
    form = request.form
    result = admin_accounts.grant_credit(actor(), account_id, form.get("usd", "").strip(),
                                         form.get("idempotency_key", ""), form.get("note", "").strip(),
                                         runtime().tiers)
    said = "Already granted (the same form was sent twice)." if result.replayed else "Credit granted."
    return _detail_page(account_id, said)


@admin_bp.post("/accounts/<row_id:account_id>/tier")
def set_tier(account_id: int):
    """Set the account's tier, whatever its purchases earned."""
    level = request.form.get("tier", "")
    if not level.lstrip("-").isdigit():
        raise InvalidRequest("Choose a tier.", param="tier")
    changed = admin_accounts.set_tier(actor(), account_id, int(level), runtime().tiers)
    return _detail_page(account_id, "Tier set." if changed else "The account already had that tier.")


@admin_bp.post("/accounts/<row_id:account_id>/suspend")
def suspend(account_id: int):
    """Suspend the account: its keys get 403 and it cannot sign in; nothing is deleted."""
    changed = admin_accounts.set_suspended(actor(), account_id, True, request.form.get("reason", ""))
    return _detail_page(account_id, "Account suspended." if changed else "The account was already suspended.")


@admin_bp.post("/accounts/<row_id:account_id>/reinstate")
def reinstate(account_id: int):
    """Lift a suspension: the account's keys and sign-in work again."""
    changed = admin_accounts.set_suspended(actor(), account_id, False)
    return _detail_page(account_id, "Account reinstated." if changed else "The account was not suspended.")
