"""A WSGI app for tests/test_worker.py: each answer says how the serving worker's servers accept."""

from __future__ import annotations

import gc
import json
import os


def app(environ, start_response):
    """{"pid": ..., "servers": [[class name, workers, max_accept], ...]} for every gevent server in this worker."""
    from gevent.server import StreamServer

    servers = [[type(s).__name__, getattr(s, "workers", None), s.max_accept]
               for s in gc.get_objects() if isinstance(s, StreamServer)]
    body = json.dumps({"pid": os.getpid(), "servers": servers}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                              ("Connection", "close")])
    return [body]
