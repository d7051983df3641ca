"""A WSGI app for tests/test_capacity.py: each answer names the serving worker's accept batch."""

from __future__ import annotations

import gc
import json
import os


def app(environ, start_response):
    """{"pid": ..., "max_accept": [...]}: the max_accept of every gevent server in this worker."""
    from gevent.server import StreamServer

    batches = sorted(s.max_accept for s in gc.get_objects() if isinstance(s, StreamServer))
    body = json.dumps({"pid": os.getpid(), "max_accept": batches}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                              ("Connection", "close")])
    return [body]
