"""Whether this process runs under gevent (gunicorn's gevent worker patches before the app loads)."""

from __future__ import annotations


def gevent_patched() -> bool:
    """True in a gevent worker: sockets and threads are cooperative, greenlets share one thread."""
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket") and monkey.is_module_patched("threading")
