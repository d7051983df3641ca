"""Discovery endpoints (no auth): recommend, config, capabilities, pricing, status, uptime, openapi.json."""

from __future__ import annotations

from flask import jsonify, request, send_file

from kyma.api import api_bp
from kyma.config import DATA
from kyma.hosts import public_url
from kyma.runtime import runtime
from kyma.services import discovery, recommend, uptime

OPENAPI_PATH = DATA / "openapi.json"


def _iso(value) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None


def _simulated() -> bool | None:
    """Whether any model is served by a built-in simulated provider (None if routing can't tell)."""
    return getattr(runtime().routes, "simulated", None)


@api_bp.get("/models/recommend")
def recommend_model():
    """A model, alternatives, a reason and a ready-to-paste config for ?agent= and/or ?usecase=/for=."""
    # A parameter given empty is a value the contract's enum refuses, not the parameter left out.
    usecase = request.args.get("usecase", request.args.get("for"))
    agent = request.args.get("agent")
    rec = recommend.recommend(runtime().catalog, usecase=usecase, agent_id=agent, origin=public_url() + "/")
    return jsonify({
        "object": "recommendation",
        "usecase": rec.usecase,
        "agent": rec.agent.id if rec.agent else None,
        "model": rec.model.id,
        "model_info": rec.model.api,
        "alternatives": [{"id": m.id, "name": m.name, "why": why,
                          "pricing": m.api["pricing"]} for m, why in rec.alternatives],
        "reason": rec.reason,
        "config": rec.config,
        "agents": list(recommend.AGENT_IDS),
    })


@api_bp.get("/models/uptime")
def model_uptime():
    """7-day uptime per model from recorded upstream attempts; null where there is no data."""
    catalog = runtime().catalog
    name = request.args.get("model")
    ids = [catalog.resolve(name)[0].id] if name else [m.id for m in catalog.models]
    rows = uptime.model_uptime(ids)
    return jsonify({"object": "list", "window_days": uptime.UPTIME_DAYS, "source": "recorded traffic",
                    "data": [{"model": r.model, "uptime_pct": r.uptime_pct, "requests": r.attempts,
                              "successes": r.successes, "errors": r.attempts - r.successes,
                              "last_request_at": _iso(r.last_attempt_at)} for r in rows]})


@api_bp.get("/status")
def status():
    """Overall and per-model status from recent traffic ("no_data" where there is none)."""
    report = uptime.service_status([m.id for m in runtime().catalog.models])
    return jsonify({
        "object": "status", "status": report.status, "window_minutes": report.window_minutes,
        "requests": report.requests, "server_errors": report.server_errors,
        "simulated_providers": _simulated(), "updated_at": _iso(report.updated_at),
        "models": [{"id": m.model, "status": m.status, "attempts": m.attempts, "failures": m.failures}
                   for m in report.models],
    })


@api_bp.get("/config")
def config():
    """Everything a client needs to configure itself against this gateway."""
    return jsonify(discovery.gateway_config(runtime().catalog, public_url(), simulated=_simulated()))


@api_bp.get("/capabilities")
def capabilities():
    """Gateway features and which models support each."""
    return jsonify(discovery.capabilities(runtime().catalog))


@api_bp.get("/pricing")
@api_bp.get("/credits/pricing")
def pricing():
    """The pricing catalog (`pricing.catalog`, rows sorted by id), cacheable for a minute."""
    resp = jsonify(discovery.pricing_catalog(runtime().catalog))
    resp.headers["Cache-Control"] = "public, max-age=60"
    return resp


@api_bp.get("/openapi.json")
def openapi():
    """The served OpenAPI contract (a superset of the seed)."""
    return send_file(OPENAPI_PATH, mimetype="application/json", max_age=60)

