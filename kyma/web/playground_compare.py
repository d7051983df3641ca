"""Two replies to one prompt, streamed side by side over the playground's one websocket."""

from __future__ import annotations

import json
from functools import partial
from typing import Callable

import gevent
import gevent.event
import gevent.lock
from simple_websocket import ConnectionClosed

from kyma import chat as pipeline
from kyma.db import connected
from kyma.errors import KymaError
from kyma.greenlets import spawn_in_request
from kyma.runtime import runtime
from kyma.web import playground_chat as chat

SIDES = ("a", "b")


def serve_both(ws, principal, prompts: tuple[chat.PlaygroundPrompt, chat.PlaygroundPrompt],
               relay: Callable, stop_requested: Callable) -> None:
    """Run each prompt in a greenlet of its own; every message names its side; Stop stops both."""
    lock = gevent.lock.BoundedSemaphore()
    stop = gevent.event.Event()

    def send(side: str, kind: str, **data) -> None:
        with lock:  # two greenlets write one socket: a frame must go out whole
            ws.send(json.dumps({"type": kind, "side": side, **data}))

    def one(side: str, prompt: chat.PlaygroundPrompt) -> None:
        with connected():  # a greenlet of its own needs its own database connection
            call = pipeline.ChatCall("playground")
            events = chat.stream_reply(runtime(), principal, prompt, call)
            try:
                relay(events, partial(send, side), stop.is_set, principal, call)
            except KymaError as err:  # one side failing leaves the other streaming
                send(side, "error", message=err.message, status=err.status)
            except ConnectionClosed:  # the browser left: the reply was closed and billed already
                pass

    jobs = [spawn_in_request(one, side, prompt) for side, prompt in zip(SIDES, prompts)]
    try:
        while len(gevent.wait(jobs, timeout=0.1)) < len(jobs):
            if stop_requested(ws):
                stop.set()
    finally:
        stop.set()  # a closed socket or a bug here: neither reply streams on unattended
        gevent.joinall(jobs)  # both sides end (and are billed) before the socket is answered again
    for job in jobs:
        if job.exception is not None:  # a bug on one side: the caller reports it and closes the socket
            raise job.exception
