"""Well-known paths outside /v1: /llms.txt for agents and /healthz for load balancers."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from peewee import DatabaseError

from kyma.db import database, integrity_failure
from kyma.hosts import public_url
from kyma.runtime import runtime
from kyma.services.discovery import llms_txt

wellknown_bp = Blueprint("wellknown", __name__)


@wellknown_bp.get("/llms.txt")
def llms():
    """A plain-text guide for agents: what this is, base URLs, endpoints, models and aliases."""
    text = llms_txt(runtime().catalog, public_url())
    return Response(text, mimetype="text/plain", headers={"Cache-Control": "public, max-age=300"})


@wellknown_bp.get("/healthz")
def healthz():
    """200 {"status": "ok"} when the database answers and passed its last integrity check, 503 otherwise."""
    try:
        database.execute_sql("SELECT 1").fetchone()
    except DatabaseError as exc:
        # The error class name says enough; its text may carry a connection string.
        return jsonify({"status": "error", "database": type(exc).__name__}), 503
    if integrity_failure():  # the details go to the log (reaper), not to an unauthenticated caller
        return jsonify({"status": "error", "database": "ok", "integrity": "failed"}), 503
    return jsonify({"status": "ok", "database": "ok"})
