"""Public pages: landing with the quickstart, the model catalog and per-model status."""

from __future__ import annotations

from flask import render_template, request, url_for

from kyma.hosts import public_url
from kyma.runtime import runtime
from kyma.services import dashboard as board
from kyma.services.catalog import filter_models
from kyma.web import htmx, web_bp
from kyma.web import model_filters as mf


@web_bp.get("/")
def landing():
    """What Kyma is and how to point an SDK or a coding agent at it."""
    catalog = runtime().catalog
    return render_template("web/landing.html", origin=public_url(),
                           default_model=catalog.default_model, model_count=len(catalog.models))


@web_bp.get("/models")
def models():
    """The catalog with the /v1/models filters; htmx gets just the table."""
    catalog = runtime().catalog
    query = mf.filter_from_args(request.args)
    shown = filter_models(catalog, query)
    aliases = {}
    for alias, target in catalog.aliases.items():
        aliases.setdefault(target, []).append(alias)
    # A filter form sends every field; the address to share names only the filters in use.
    in_use = url_for("web.models", **{k: v for k, v in request.args.items() if v})
    return htmx.render("web/models.html", "web/_models_table.html", push_url=in_use, models=shown, query=query,
                       mf=mf, aliases=aliases, total=len(catalog.models), default_model=catalog.default_model)


@web_bp.get("/status")
def status():
    """7-day uptime and current status per model, from real upstream attempts."""
    ids = [m.id for m in runtime().catalog.models]
    return htmx.render("web/status.html", "web/_uptime.html", board=board.status_board(ids))
