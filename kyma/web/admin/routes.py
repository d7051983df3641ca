"""Console page for providers and routes: live circuits, recent health, and the switches."""

from __future__ import annotations

from flask import request

from kyma.runtime import runtime
from kyma.services import route_status
from kyma.web import htmx
from kyma.web.admin import actor, admin_bp

WINDOWS = (5, 15, 60)


def _minutes() -> int:
    minutes = request.values.get("minutes", 15, type=int)
    return minutes if minutes in WINDOWS else 15


def _page(message: str = ""):
    rt = runtime()
    return htmx.render("admin/routes.html", "admin/_routes.html", target="routes", message=message,
                       rows=route_status.route_health(rt.routes, rt.breaker, _minutes()), minutes=_minutes(),
                       windows=WINDOWS)


@admin_bp.get("/routes")
def routes():
    """Every route: circuit state, since when, last error, latency, TTFT and error rate; real or simulated."""
    return _page()


@admin_bp.post("/routes/switch")
def switch_route():
    """Open or close a circuit, disable or enable a route, by hand (shared by every worker and instance)."""
    rt = runtime()
    key, action = request.form.get("route", ""), request.form.get("action", "")
    route_status.switch(actor(), rt.routes, rt.breaker, key, action)
    return _page(f"{key}: {action} done.")
