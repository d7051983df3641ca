"""The simulated provider's Flask app: `gunicorn -k gevent 'kyma.sim.app:create_sim_app()'`.

Routes: POST /v1/chat/completions, GET /v1/models, GET /sim/stats, POST /sim/reset, and
POST/DELETE /sim/outage (the provider down for a window, then healthy again).
Independent of the gateway: no gateway app, no database.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from kyma.sim.completions import build_completion
from kyma.sim.delivery import Pacing, fault_response, plain_response, stream_response
from kyma.sim.errors import SimRequestError
from kyma.sim.faults import FaultPicker, FaultSyntaxError, make_fault
from kyma.sim.prompt_cache import PrefixCache
from kyma.sim.settings import SimSettings
from kyma.sim.stats import SimStats

bp = Blueprint("sim", __name__)
FAULT_HEADER = "X-Sim-Fault"


@dataclass
class SimState:
    """Everything one simulator process keeps between requests."""

    settings: SimSettings
    picker: FaultPicker
    cache: PrefixCache
    stats: SimStats

    @property
    def pacing(self) -> Pacing:
        s = self.settings
        return Pacing(s.latency_ms / 1000, s.tokens_per_sec, s.timeout_seconds)


def create_sim_app(environ: dict | None = None) -> Flask:
    """A simulator app configured from KYMA_SIM_* variables (or the given mapping)."""
    settings = SimSettings.from_env(environ)
    app = Flask("kyma.sim")
    app.extensions["kyma_sim"] = SimState(
        settings=settings,
        picker=FaultPicker(settings.name, settings.faults, settings.seed),
        cache=PrefixCache(),
        stats=SimStats(settings.name),
    )
    app.register_blueprint(bp)
    app.register_error_handler(SimRequestError, lambda e: e.response())
    return app


def _state() -> SimState:
    return current_app.extensions["kyma_sim"]


def _check_key(settings: SimSettings) -> None:
    if not settings.api_key:
        return
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {settings.api_key}".encode()):
        raise SimRequestError(401, "Incorrect API key provided.", code="invalid_api_key")


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    """An OpenAI chat completion, plain or streamed, with the requested or drawn fault."""
    state = _state()
    _check_key(state.settings)
    body = request.get_json(silent=True, force=True)
    model = body.get("model", "") if isinstance(body, dict) else ""
    messages = body.get("messages") if isinstance(body, dict) else None
    try:
        fault = state.picker.pick(request.headers.get(FAULT_HEADER), str(model), messages, time.monotonic())
    except FaultSyntaxError as exc:
        raise SimRequestError(400, str(exc), param=FAULT_HEADER) from exc
    state.stats.record(str(model), fault.kind if fault else "none", body, _safe_headers())
    if fault is not None and fault.kind == "timeout":
        time.sleep(state.settings.timeout_seconds)
    completion = build_completion(body, state.settings.name, state.cache, state.settings.context_window,
                                  state.settings.prefill)
    headers = {"X-Sim-Provider": state.settings.name, "X-Request-Id": completion.id,
               "X-Sim-Fault-Applied": fault.kind if fault else "none"}
    replaced = fault_response(fault, completion, request.environ)
    if replaced is not None:
        replaced.headers.update(headers)
        return replaced
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return stream_response(completion, fault, state.pacing, include_usage, request.environ, headers)
    return plain_response(completion, fault, state.pacing, headers)


def _safe_headers() -> dict:
    """Request headers worth showing in /sim/stats (never the credentials)."""
    return {k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "x-api-key")}


@bp.get("/v1/models")
def list_models() -> Response:
    """The model ids this simulated provider says it serves (it accepts any)."""
    state = _state()
    _check_key(state.settings)
    return jsonify({"object": "list", "data": [
        {"id": m, "object": "model", "created": 1767225600, "owned_by": state.settings.name}
        for m in state.settings.models]})


@bp.get("/sim/stats")
def stats() -> Response:
    """How many chat requests reached this process, by fault and by model."""
    return Response(json.dumps(_state().stats.as_json(), default=str), mimetype="application/json")


@bp.post("/sim/outage")
def start_outage() -> Response:
    """Be down for `seconds` (default 10): every request gets `fault` (default 503), then all is well."""
    data = request.get_json(silent=True, force=True) or {}
    try:
        seconds = float(data.get("seconds", 10))
        fault = make_fault(str(data.get("fault", "503")))
    except (TypeError, ValueError) as exc:
        raise SimRequestError(400, f"bad outage: {exc}") from exc
    _state().picker.outage = (time.monotonic() + seconds, fault)
    return jsonify({"ok": True, "seconds": seconds, "fault": fault.kind})


@bp.delete("/sim/outage")
def end_outage() -> Response:
    """End an outage now."""
    _state().picker.outage = None
    return jsonify({"ok": True})


@bp.post("/sim/reset")
def reset() -> Response:
    """Zero the counters (the prompt cache is kept)."""
    _state().stats.reset()
    return jsonify({"ok": True})
