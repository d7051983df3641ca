"""The one module that knows htmx's HX-* headers: fragment detection and response events."""

from __future__ import annotations

import json

from flask import render_template, request

REQUEST = "HX-Request"
HISTORY_RESTORE = "HX-History-Restore-Request"
TARGET = "HX-Target"
TRIGGER_EVENT = "HX-Trigger"
RETARGET = "HX-Retarget"
RESWAP = "HX-Reswap"
REDIRECT = "HX-Redirect"
STOP_POLLING = 286  # htmx stops an `every Ns` poller on this status


def is_htmx() -> bool:
    """True when htmx sent this request."""
    return request.headers.get(REQUEST) == "true"


def wants_fragment(target: str | None = None) -> bool:
    """True for an htmx request that is not a history restore (and aims at `target`, when given)."""
    if not is_htmx() or request.headers.get(HISTORY_RESTORE) == "true":
        return False
    return target is None or request.headers.get(TARGET) == target


def render(page: str, fragment: str, target: str | None = None, **context):
    """Render the fragment for htmx, the full page otherwise; caches learn the difference from Vary."""
    from flask import make_response

    body = render_template(fragment if wants_fragment(target) else page, **context)
    resp = make_response(body)
    resp.vary.add(REQUEST)
    return resp


def trigger(resp, event: str, detail: dict | None = None):
    """Fire a client event when the response lands, merging with events already set."""
    existing = resp.headers.get(TRIGGER_EVENT)
    events = json.loads(existing) if existing else {}
    events[event] = detail or {}
    resp.headers[TRIGGER_EVENT] = json.dumps(events)
    return resp


def retarget(resp, selector: str, swap: str = "innerHTML"):
    """Send this response to another element (errors go to the page's flash area)."""
    resp.headers[RETARGET] = selector
    resp.headers[RESWAP] = swap
    return resp


def redirect(url: str):
    """A redirect that works for both htmx (full navigation) and plain browsers (303)."""
    from flask import make_response
    from flask import redirect as flask_redirect

    if is_htmx():
        resp = make_response("", 204)
        resp.headers[REDIRECT] = url
        return resp
    return flask_redirect(url, 303)
