"""The simulated provider's Flask app: `gunicorn -k gevent 'kyma.sim.app:create_sim_app()'`.

Routes: POST /v1/chat/completions, POST /v1/completions (legacy, with fill-in-the-middle),
POST /v1/embeddings (deterministic unit vectors), GET /v1/models, GET /sim/stats, POST /sim/reset,
POST/DELETE /sim/outage (the provider down for a window, then healthy again) and POST /sim/gate/release
(lets through the requests the `gate` fault holds).
Independent of the gateway: no gateway app, no database. kyma/sim/ports.py serves several in one process.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from kyma.sim.completions import build_completion
from kyma.sim.delivery import Pacing, fault_response, json_response, pause, plain_response, stream_response
from kyma.sim.embeddings import embeddings_body, inputs, tokens_of
from kyma.sim.errors import SimRequestError
from kyma.sim.faults import Fault, FaultPicker, FaultSyntaxError, make_fault
from kyma.sim.gate import Gate
from kyma.sim.legacy import build_text_completion, text_completion_body, text_completion_events
from kyma.sim.prompt_cache import PrefixCache
from kyma.sim.settings import SimSettings
from kyma.sim.stats import SimStats

bp = Blueprint("sim", __name__)
FAULT_HEADER = "X-Sim-Fault"


@dataclass
class SimState:
    """Everything one simulated provider keeps between requests (its own even when it shares a process)."""

    settings: SimSettings
    picker: FaultPicker
    cache: PrefixCache
    stats: SimStats
    gate: Gate

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
        gate=Gate(),
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
    body, fault = _admit("messages")
    completion = build_completion(body, state.settings.name, state.cache, state.settings.context_window,
                                  state.settings.prefill)
    return _answer(body, fault, completion)


@bp.post("/v1/completions")
def completions() -> Response:
    """A legacy text completion (a `suffix` is filled in the middle), plain or streamed."""
    state = _state()
    body, fault = _admit("prompt")
    completion = build_text_completion(body, state.settings.name, state.cache, state.settings.context_window)
    return _answer(body, fault, completion, legacy=True)


@bp.post("/v1/embeddings")
def embeddings() -> Response:
    """Deterministic embeddings for every input; faults as for a plain completion."""
    state = _state()
    body, fault = _admit("input")
    out = embeddings_body(body, state.settings.name)
    headers = {"X-Sim-Provider": state.settings.name, "X-Sim-Fault-Applied": fault.kind if fault else "none"}
    replaced = fault_response(fault, sum(tokens_of(i) for i in inputs(body.get("input"))), request.environ)
    if replaced is not None:
        replaced.headers.update(headers)
        return replaced
    if fault is not None and fault.kind == "no-usage":
        out.pop("usage")
    pause(state.pacing.latency_s)
    return json_response(json.dumps(out).encode(), fault, state.pacing, headers)


def _admit(prompt_field: str) -> tuple[dict, Fault | None]:
    """Check the key, read the body, draw the fault and count the request, then hold it as the fault says."""
    state = _state()
    _check_key(state.settings)
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise SimRequestError(400, "We could not parse the JSON body of your request.")
    model = body.get("model", "")
    try:
        fault = state.picker.pick(request.headers.get(FAULT_HEADER), str(model), body.get(prompt_field),
                                  time.monotonic())
    except FaultSyntaxError as exc:
        raise SimRequestError(400, str(exc), param=FAULT_HEADER) from exc
    state.stats.record(str(model), fault.kind if fault else "none", body, _safe_headers())
    return body, _hold(state, fault)


def _hold(state: SimState, fault: Fault | None) -> Fault | None:
    """Sleep out a timeout fault; wait at the gate for a gate fault, then answer as usual (None)."""
    if fault is not None and fault.kind == "timeout":
        time.sleep(state.settings.timeout_seconds)
    if fault is not None and fault.kind == "gate":
        if not state.gate.wait(fault.position):  # never released: say so, rather than answer late
            raise SimRequestError(504, f"The gate was not released within {fault.position} seconds.",
                                  type_="server_error", code="gate_timeout")
        return None
    return fault


def _answer(body: dict, fault: Fault | None, completion, legacy: bool = False) -> Response:
    """A completion as JSON or SSE (chat or legacy shapes), or the fault that replaces it."""
    state = _state()
    headers = {"X-Sim-Provider": state.settings.name, "X-Request-Id": completion.id,
               "X-Sim-Fault-Applied": fault.kind if fault else "none"}
    replaced = fault_response(fault, completion.prompt_tokens, request.environ)
    if replaced is not None:
        replaced.headers.update(headers)
        return replaced
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        render = {"render": text_completion_events} if legacy else {}
        return stream_response(completion, fault, state.pacing, include_usage, request.environ, headers, **render)
    return plain_response(completion, fault, state.pacing, headers,
                          **({"render": text_completion_body} if legacy else {}))


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
    """How many chat requests reached this provider, by fault and by model, and how many wait at its gate."""
    state = _state()
    counts = {**state.stats.as_json(), "gated": state.gate.waiting}
    return Response(json.dumps(counts, default=str), mimetype="application/json")


@bp.post("/sim/gate/release")
def release_gate() -> Response:
    """Let the requests waiting at the gate through; later `gate` requests wait for the next release."""
    return jsonify({"released": _state().gate.release()})


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
