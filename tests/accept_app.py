"""A WSGI app for tests/test_worker.py: each answer says which worker served it and how its servers accept.

/hold?pid_file=P&release=R first writes the worker's pid to P, then blocks the whole worker (its event
loop too, so it accepts nothing) until R exists, for 30 seconds at most: meanwhile only the other
workers can take a connection.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from urllib.parse import parse_qs


def app(environ, start_response):
    """{"pid": ..., "servers": [[class name, workers, max_accept], ...]} for every gevent server in this worker."""
    from gevent.monkey import get_original
    from gevent.server import StreamServer

    if environ["PATH_INFO"] == "/hold":
        _hold(parse_qs(environ["QUERY_STRING"]), get_original("time", "sleep"))
    servers = [[type(s).__name__, getattr(s, "workers", None), s.max_accept]
               for s in gc.get_objects() if isinstance(s, StreamServer)]
    body = json.dumps({"pid": os.getpid(), "servers": servers}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                              ("Connection", "close")])
    return [body]


def _hold(query: dict, blocking_sleep) -> None:
    Path(query["pid_file"][0]).write_text(str(os.getpid()))
    release = Path(query["release"][0])
    for _ in range(3000):  # 30 s at most
        if release.exists():
            return
        blocking_sleep(0.01)  # the unpatched sleep: no greenlet of this worker runs meanwhile
