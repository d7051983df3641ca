"""The web layer's htmx seam: fragment detection and htmx-aware responses, through htmx-flask."""

from __future__ import annotations

from flask import redirect as flask_redirect
from flask import render_template, request
from htmx_flask import make_response

# Caches must tell a fragment from a full page; htmx marks its requests with this header.
REQUEST_HEADER = "HX-Request"


def is_htmx() -> bool:
    """True when htmx sent this request."""
    return bool(request.htmx)


def wants_fragment(target: str | None = None) -> bool:
    """True for an htmx request that is not a history restore (and aims at `target`, when given)."""
    if not request.htmx or request.htmx.history_restore_request:
        return False
    return target is None or request.htmx.target == target


def render(page: str, fragment: str, target: str | None = None, push_url: str | None = None, **context):
    """Render the fragment for htmx, the full page otherwise; caches learn the difference from Vary.

    `push_url` is the address htmx puts in the location bar for a fragment (instead of the request's).
    """
    if wants_fragment(target):
        resp = make_response(render_template(fragment, **context), push_url=push_url)
    else:
        resp = make_response(render_template(page, **context))
    resp.vary.add(REQUEST_HEADER)
    return resp


def at_url(body: str, status: int, url: str):
    """A page htmx shows under `url` in the address bar, so a reload GETs that instead of re-posting."""
    return make_response(body, status, replace_url=url)


def retarget(body: str, status: int, selector: str, select: str):
    """A response htmx swaps into another element (errors go to the page's flash area).

    `select` picks what of the body to swap, whatever the triggering element's hx-select asked for.
    """
    resp = make_response(body, status, retarget=selector, reswap="innerHTML")
    resp.headers["HX-Reselect"] = select
    return resp


def redirect(url: str):
    """A redirect that works for both htmx (full navigation) and plain browsers (303)."""
    if is_htmx():
        return make_response("", 204, redirect=url)
    return flask_redirect(url, 303)
