"""GET /metrics: the Prometheus exposition, when KYMA_METRICS is on, behind KYMA_METRICS_TOKEN when set."""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Flask, Response, current_app, request

from kyma.runtime import runtime
from kyma.services import ledger, metrics

metrics_bp = Blueprint("metrics", __name__)


def register_metrics(app: Flask, token: str) -> None:
    """Serve /metrics on `app`; only the token's digest is kept ("" asks for no token)."""
    app.extensions["kyma_metrics_token"] = hashlib.sha256(token.encode()).digest() if token else None
    app.register_blueprint(metrics_bp)


def _token_ok() -> bool:
    expected = current_app.extensions.get("kyma_metrics_token")
    if expected is None:
        return True
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    digest = hashlib.sha256(presented.strip().encode()).digest()
    # Digests of equal length: the comparison's time says nothing about the token.
    return hmac.compare_digest(digest, expected) and scheme.lower() == "bearer"


@metrics_bp.get("/metrics")
def scrape():
    """Every worker's counters and histograms, plus circuit states and open holds read now."""
    if not _token_ok():
        return Response("A bearer token is required for /metrics.\n", 401, mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    rt = runtime()
    routes = [(route.key, route.provider.name, model) for model, rs in rt.routes.by_model.items() for route in rs]
    store = metrics.StoreCollector(lambda: routes, rt.breaker.state, ledger.open_holds)
    body, content_type = metrics.exposition(store)
    return Response(body, 200, content_type=content_type, headers={"Cache-Control": "no-store"})
