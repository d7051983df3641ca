"""How many connections one gunicorn worker holds, and the file descriptors that takes.

A streamed answer holds its client connection, and its upstream connection, for as long as the
model writes: with long agent streams, open connections (not requests per second) are what runs
out first. Past KYMA_WORKER_CONNECTIONS a worker stops accepting; new connections wait in the
listen backlog and their first chunk waits with them.
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Mapping

# Per gevent worker. A greenlet is cheap (a few tens of KiB with its request), so the cap is sized
# for agents' long streams rather than for memory.
DEFAULT_WORKER_CONNECTIONS = 5000
# Descriptors a worker needs besides its connections: database, log files, pools' spares.
SPARE_FDS = 256
# gunicorn's listen backlog: connections the kernel queues while every worker is busy accepting.
# The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 4096
# The most connections a gevent worker accepts each time its listening socket wakes it. gunicorn's
# gevent worker takes one when there are several workers (so that one of them cannot take a whole
# burst while another idles), but a busy worker is woken once per turn of its event loop: one
# connection per turn let the listen queue overflow during a burst of streams, and the kernel then
# drops connections, which clients see as a second or more of retransmission delay, or as resets.
# So each wake-up takes its workers' share of what is queued: one when one is waiting, half of a
# burst with two workers, never more than this. (A fixed batch let the worker awake first take all
# of a client's 32 keep-alive connections, and the other idle.)
ACCEPT_BATCH = 64
# struct tcp_info: on a listening socket Linux reports the accept queue's length as tcpi_unacked.
_TCP_INFO_QUEUED = 24


def worker_connections(env: Mapping[str, str] | None = None) -> int:
    """KYMA_WORKER_CONNECTIONS (from `env`, else this process's), the most connections a worker holds."""
    value = int((os.environ if env is None else env).get("KYMA_WORKER_CONNECTIONS", str(DEFAULT_WORKER_CONNECTIONS)))
    if value < 1:
        raise ValueError("KYMA_WORKER_CONNECTIONS must be 1 or more")
    return value


def fds_needed(connections: int) -> int:
    """Descriptors one worker needs at `connections` streams: the client's and the upstream's each."""
    return 2 * connections + SPARE_FDS


@dataclass(frozen=True)
class FdLimit:
    """RLIMIT_NOFILE after raise_fd_limit, and whether it covers what was asked."""

    soft: int
    hard: int
    needed: int

    @property
    def enough(self) -> bool:
        return self.soft == resource.RLIM_INFINITY or self.soft >= self.needed

    def advice(self) -> str:
        """What the operator must do when the hard limit is too low."""
        return (f"kyma: the open-file limit is {self.soft} (hard {self.hard}); "
                f"{self.needed} are needed for KYMA_WORKER_CONNECTIONS streams per worker. Raise the "
                "hard limit (`ulimit -Hn` as root, LimitNOFILE= in a systemd unit, "
                "`--ulimit nofile=N:N` for Docker) or lower KYMA_WORKER_CONNECTIONS.")


def raise_fd_limit(needed: int) -> FdLimit:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (children inherit it).

    The soft limit is often 1024 while the hard one is far higher; only root can raise the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # some platforms refuse RLIM_INFINITY as a soft limit: keep what we have
    return FdLimit(soft, hard, needed)


def ensure_fd_limit(connections: int) -> FdLimit:
    """raise_fd_limit for `connections` per worker; warn on stderr when it still falls short."""
    limit = raise_fd_limit(fds_needed(connections))
    if not limit.enough:
        print(limit.advice(), file=sys.stderr, flush=True)
    return limit


def batch_accepts(worker) -> bool:
    """In a gunicorn gevent worker, before it starts serving: each wake-up of its servers accepts its
    share of the queued connections (see ACCEPT_BATCH). False for any other kind of worker."""
    try:
        from gunicorn.workers import ggevent
    except ImportError:
        return False
    if not isinstance(worker, ggevent.GeventWorker) or worker.server_class is not None:
        return False
    ggevent.StreamServer = _batched(ggevent.StreamServer, worker.cfg.workers)
    return True


def accept_share(sock, workers: int) -> int:
    """How many connections to accept now: this worker's share of the listen queue, 1 to ACCEPT_BATCH."""
    try:
        queued = struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32), _TCP_INFO_QUEUED)[0]
    except (OSError, AttributeError, struct.error):  # not a TCP socket, or no TCP_INFO here
        return 1 if workers > 1 else ACCEPT_BATCH
    return max(1, min(ACCEPT_BATCH, -(-queued // max(1, workers))))


def _batched(server_class, workers: int):
    """server_class, whose max_accept is accept_share() at each wake-up (gunicorn sets it to 1 per worker)."""
    if getattr(server_class, "batched", False):
        server_class.workers = workers
        return server_class

    class Batched(server_class):
        batched = True

        @property
        def max_accept(self) -> int:
            return accept_share(self.socket, Batched.workers)

        @max_accept.setter
        def max_accept(self, value: int) -> None:
            pass  # gunicorn's 1 for several workers: the share above decides instead

    Batched.workers = workers
    return Batched
