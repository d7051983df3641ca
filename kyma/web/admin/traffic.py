"""Console page for traffic: every account's requests with filters, and per model / provider health."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date

from flask import request, url_for

from kyma.runtime import runtime
from kyma.services import traffic as svc
from kyma.services.periods import PERIODS, period
from kyma.web import htmx
from kyma.web.admin import admin_bp
from kyma.web.admin.paging import page_number


def _day(name: str) -> date | None:
    text = request.args.get(name, "").strip()
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:  # a half-typed date leaves the filter off
        return None


def _filter() -> svc.TrafficFilter:
    a = request.args
    status = a.get("status", "").strip()
    return svc.TrafficFilter(since=_day("from"), until=_day("to"), model=a.get("model", "").strip()[:100],
                             status=status if status in svc.STATUS_CLASSES or (status.isdigit() and len(status) == 3)
                             else "", request_id=a.get("q", "").strip()[:64], account=a.get("account", "").strip()[:254],
                             provider=a.get("provider", "").strip()[:100], layer=a.get("layer", "").strip()[:1],
                             error=a.get("error", "").strip()[:100], error_code=a.get("code", "").strip()[:64],
                             page=page_number())


def query_args(flt: svc.TrafficFilter, **changes) -> dict:
    """The query string of a filter, leaving out what is empty."""
    values = {**asdict(flt), **changes}
    args = {"from": values["since"].isoformat() if values["since"] else "",
            "to": values["until"].isoformat() if values["until"] else "", "model": values["model"],
            "status": values["status"], "q": values["request_id"], "account": values["account"],
            "provider": values["provider"], "layer": values["layer"], "error": values["error"],
            "code": values["error_code"], "page": values["page"] if values["page"] > 1 else ""}
    return {k: v for k, v in args.items() if v}


@admin_bp.get("/traffic")
def traffic():
    """All requests, filtered and paged; above them, each model's and provider's numbers over ?range=."""
    flt = _filter()
    rng = period(request.args.get("range"), "1h")
    by_model, by_provider = svc.summaries(rng)
    push = url_for("admin.traffic", **query_args(flt)) if htmx.wants_fragment("traffic-results") else None
    return htmx.render("admin/traffic.html", "admin/_traffic_rows.html", target="traffic-results", push_url=push,
                       log=svc.traffic(flt), qa=query_args, by_model=by_model, by_provider=by_provider, rng=rng,
                       periods=PERIODS.values(), models=sorted(m.id for m in runtime().catalog.every), providers=svc.providers_logged(),
                       error_codes=svc.error_codes_logged())
