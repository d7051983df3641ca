"""Whether this process runs under gevent (gunicorn's gevent worker patches before the app loads)."""

from __future__ import annotations


def gevent_patched() -> bool:
    """True in a gevent worker: sockets and threads are cooperative, greenlets share one thread."""
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket") and monkey.is_module_patched("threading")


def spawn_in_request(fn, *args):
    """A greenlet running fn(*args) inside its own copy of the current request's context.

    One copy per greenlet: a copy pushed by two greenlets at once would pop the other's context.
    """
    import gevent
    from flask import copy_current_request_context

    return gevent.spawn(copy_current_request_context(fn), *args)
