"""How many connections one gunicorn worker holds, and the file descriptors that takes.

A streamed answer holds its client connection, and its upstream connection, for as long as the
model writes: with long agent streams, open connections (not requests per second) are what runs
out first. Past KYMA_WORKER_CONNECTIONS a worker stops accepting; new connections wait in the
listen backlog and their first chunk waits with them.
"""

from __future__ import annotations

import os
import resource
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
