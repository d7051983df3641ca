"""The playground page and its websocket: a chat reply streamed token by token, billed like the API."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

from flask import abort, render_template, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from kyma import chat as pipeline
from kyma import strict_json
from kyma.db import release_connection
from kyma.errors import KymaError
from kyma.hosts import public_url
from kyma.runtime import runtime
from kyma.web import playground_chat as chat
from kyma.web import csrf, playground_compare, web_bp
from kyma.web.identity import current_principal, fresh_principal, login_required

log = logging.getLogger(__name__)

# flask-sock only wraps the view; routes are registered on web_bp, so this object holds no app state.
sock = Sock()


@web_bp.get("/playground")
@login_required
def playground():
    """The playground form; the reply streams over /playground/ws."""
    catalog = runtime().catalog
    others = [m.id for m in catalog.models if m.id != catalog.default_model]
    return render_template("web/playground.html", models=catalog.models, aliases=sorted(catalog.aliases.items()),
                           default_model=catalog.default_model, compare_model=others[0] if others else None,
                           origin=public_url())


def _send(ws, kind: str, **data) -> None:
    ws.send(json.dumps({"type": kind, **data}))


def _stop_requested(ws) -> bool:
    """True when the browser pressed Stop (or left); reads without blocking."""
    message = ws.receive(timeout=0)
    if message is None:
        return False
    try:
        return json.loads(message).get("type") == "stop"
    except (ValueError, AttributeError):
        return False


def _relay(events, send, stop_requested, principal, call) -> None:
    """Forward one reply; Stop closes the pipeline's generator, which closes the upstream call."""
    try:
        for event in events:
            if isinstance(event, chat.Delta):
                send("delta", text=event.text)
            elif isinstance(event, chat.Finished):
                send("done", **asdict(event))
                return
            if stop_requested():
                # Close first: that bills and logs the reply (a 499), so "stopped" carries what it cost.
                events.close()
                billed = chat.billed_summary(principal, call)
                send("stopped", **(asdict(billed) if billed else {}))
                return
    finally:
        events.close()


def _run(ws, principal, data: dict) -> None:
    """Stream one reply, or with `compare` two replies side by side."""
    if not csrf.token_matches(data.get("csrf")):
        return _send(ws, "error", message="Reload the page: the form is stale.", status=403)
    prompt = chat.PlaygroundPrompt.from_message(data)
    other = chat.compare_prompt(data)
    if other is not None:
        return playground_compare.serve_both(ws, principal, (prompt, other), _relay, _stop_requested)
    call = pipeline.ChatCall("playground")
    events = chat.stream_reply(runtime(), principal, prompt, call)
    _relay(events, lambda kind, **data: _send(ws, kind, **data), lambda: _stop_requested(ws), principal, call)


@web_bp.before_request
def _guard_socket():
    # Refuse the upgrade itself: closing an accepted socket with a message in flight can lose both.
    if request.endpoint == "web.playground_ws":
        # A foreign page must not ride the session cookie; browsers always send Origin here.
        if not csrf.same_origin(referer=False):
            abort(403, description="Cross-origin websocket refused.")
        if current_principal() is None:
            abort(401, description="Log in to use the playground.")


@sock.route("/playground/ws", bp=web_bp)
def playground_ws(ws):
    """Protocol: client sends {type: start, …} or {type: stop}; server sends delta/done/stopped/error.

    A start with `compare` (a second model, and optionally `compare_messages`, its side's history)
    streams both replies at once; their messages carry `side`: "a" or "b".
    """
    while True:
        release_connection()  # a websocket idles for minutes: don't hold a pooled connection meanwhile
        try:
            data = strict_json.loads(ws.receive())
        except ValueError:
            _send(ws, "error", message="Messages must be JSON.", status=400)
            continue
        except RecursionError:  # nested past what the parser follows: a hostile message, not a typo
            _send(ws, "error", message="The message is nested too deeply.", status=400)
            ws.close(reason=1007, message="nested too deeply")  # 1007: invalid payload data
            return
        if not isinstance(data, dict) or data.get("type") != "start":
            continue
        # Checked per reply, not once at connect: log-out or expiry must stop the billing on an open socket.
        principal = fresh_principal()
        if principal is None:
            _send(ws, "error", message="Your session has ended. Log in again.", status=401)
            ws.close(reason=1008, message="session ended")
            return
        try:
            _run(ws, principal, data)
        except ConnectionClosed:  # the browser left mid-reply: the reply was closed and billed already
            return
        except KymaError as err:
            _send(ws, "error", message=err.message, status=err.status)
        except RecursionError:
            _send(ws, "error", message="The message is nested too deeply.", status=400)
            ws.close(reason=1007, message="nested too deeply")
            return
        except Exception:  # a bug: say so on the socket (an HTTP 500 cannot be written onto it), and close
            log.exception("playground reply failed")
            _send(ws, "error", message="Internal error.", status=500)
            ws.close(reason=1011, message="internal error")
            return
