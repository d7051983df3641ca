"""Credits and limits: GET /v1/credits/balance, GET /v1/auth/limits, GET /v1/limits/tiers (public)."""

from __future__ import annotations

from flask import jsonify, request

from kyma.api import api_bp
from kyma.api.credentials import principal_from_request
from kyma.runtime import runtime
from kyma.services.credit_reports import balance_report, limits_report, tiers_report


@api_bp.get("/credits/balance")
def credits_balance():
    """The caller's balance, credit on hold, lifetime purchases and tier."""
    principal = principal_from_request(request)
    resp = jsonify(balance_report(principal.account_id, runtime().tiers))
    resp.headers["Cache-Control"] = "no-store"
    return resp


@api_bp.get("/auth/limits")
def auth_limits():
    """The caller's tier limits and current usage."""
    principal = principal_from_request(request)
    rt = runtime()
    resp = jsonify(limits_report(principal.account_id, rt.tiers, rt.limiter))
    resp.headers["Cache-Control"] = "no-store"
    return resp


@api_bp.get("/limits/tiers")
def limits_tiers():
    """The public tier ladder."""
    resp = jsonify(tiers_report(runtime().tiers))
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
