"""bcrypt password hashing, run on gevent's threadpool when gevent drives the process."""

from __future__ import annotations

import re
from functools import lru_cache

import bcrypt

from kyma.greenlets import gevent_patched

MAX_PASSWORD_BYTES = 72  # bcrypt 5 raises above this; callers validate first
_ROUNDS = re.compile(r"^\$2[aby]\$(\d\d)\$")


def _run(fn, *args):
    # A bcrypt hash holds the CPU for a long time by design; inline it would stall every greenlet
    # of the worker, so under gevent it runs in a real thread (bcrypt releases the GIL).
    if gevent_patched():
        import gevent

        return gevent.get_hub().threadpool.apply(fn, args)
    return fn(*args)


def password_too_long(password: str) -> bool:
    """True when the UTF-8 encoding exceeds bcrypt's 72-byte limit."""
    return len(password.encode("utf-8")) > MAX_PASSWORD_BYTES


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash of the password (which must be at most 72 bytes)."""
    salt = bcrypt.gensalt(rounds)
    return _run(bcrypt.hashpw, password.encode("utf-8"), salt).decode("ascii")


def check_password(password: str, hashed: str) -> bool:
    """True when the password matches; False (never an exception) for over-long input."""
    if password_too_long(password):
        return False
    return bool(_run(bcrypt.checkpw, password.encode("utf-8"), hashed.encode("ascii")))


def needs_rehash(hashed: str, rounds: int) -> bool:
    """True when the stored hash used a different cost than the configured one."""
    m = _ROUNDS.match(hashed)
    return m is None or int(m.group(1)) != rounds


@lru_cache(maxsize=4)
def dummy_hash(rounds: int) -> str:
    """A fixed hash to check against for unknown accounts, so timing does not reveal them."""
    return _run(bcrypt.hashpw, b"kyma-dummy-password", bcrypt.gensalt(rounds)).decode("ascii")
