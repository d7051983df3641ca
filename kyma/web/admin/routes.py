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
    provider, attention = request.values.get("provider", ""), request.values.get("attention") == "1"
    rows = route_status.route_health(rt.routes, rt.breaker, _minutes())
    shown = [r for r in rows if (not provider or r.provider == provider)
             and (not attention or r.circuit != "closed" or r.errors)]
    return htmx.render("admin/routes.html", "admin/_routes.html", target="routes", message=message, rows=shown,
                       total=len(rows), minutes=_minutes(), windows=WINDOWS, provider=provider, attention=attention,
                       providers=sorted({r.provider for r in rows}))


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
