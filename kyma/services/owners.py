"""Who owns a hold: a worker named host:pid, and whether that worker is gone."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from pathlib import Path

from kyma.models import Hold

OWNER_LENGTH = Hold.owner.max_length


def worker_identity() -> str:
    """This process as a hold owner: host:pid (lets the reaper spot holds of dead workers)."""
    return identity_of(os.getpid())  # keyed by pid: a forked worker gets its own


@functools.cache
def identity_of(pid: int) -> str:
    """Process `pid` of this host as a hold owner."""
    return f"{_host_part(socket.gethostname(), str(pid))}:{pid}"


def _host_part(host: str, pid: str) -> str:
    """The host as an owner names it: whole when host:pid fits the column, else cut and ended with a hash
    of the whole name. A cut pid would name another process, and a bare cut could make two hosts one
    (pod names differ at their end)."""
    room = OWNER_LENGTH - 1 - len(pid)
    if len(host) <= room:
        return host
    return f"{host[:room - 9]}~{hashlib.sha256(host.encode()).hexdigest()[:8]}"


def owner_is_dead(owner: str, host: str, me: str) -> bool:
    """True when `owner` is a process on this host that no longer runs."""
    name, _, pid = owner.rpartition(":")
    if not pid.isdigit() or name != _host_part(host, pid) or owner == me:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return is_zombie(int(pid))


def is_zombie(pid: int) -> bool:
    """True when `pid` has exited and waits for its parent to reap it (Linux; False where unknown)."""
    # A killed worker answers kill(pid, 0) until its master reaps it, which a busy master may not
    # have done yet: its holds are abandoned all the same.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return process_state(stat) in ("Z", "X")


def process_state(stat: str) -> str:
    """The state letter of a /proc/PID/stat line, read after the command name (which may hold ")")."""
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else ""
