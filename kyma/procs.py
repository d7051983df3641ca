"""gunicorn processes on sockets bound here: started, waited for until they answer, stopped by group.

The parent binds and listens first and the child inherits the socket (gunicorn's `--bind fd://N`),
so a port can never be taken between choosing it and serving on it, and whatever answers on it is
this server: no free-port guessing, no retries, no log parsing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import requests

from kyma import gunicorn_hooks
from kyma.capacity import DEFAULT_WORKER_CONNECTIONS, LISTEN_BACKLOG, worker_connections

ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1  # Linux prctl option: signal the child when its parent dies
SIM_TARGET = "kyma.sim.app:create_sim_app()"
SIMS_TARGET = "kyma.sim.ports:create_sims_app()"  # several providers, one per socket


# Variables a server started here never takes from its caller: it is given its own settings and keys.
CALLER_PREFIXES = ("KYMA_", "OPENAI_", "ANTHROPIC_")


def caller_env(*also: str) -> dict[str, str]:
    """This process's environment but for the variables whose names start with CALLER_PREFIXES or `also`."""
    return {k: v for k, v in os.environ.items() if not k.startswith((*CALLER_PREFIXES, *also))}


class PortInUse(OSError):
    """The port asked for is held by another process."""


def die_with_parent() -> None:
    """In a child (preexec_fn): get SIGTERM when the process that started it dies, even by SIGKILL."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the launcher's own signal handling still stops the children


def listen(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on host:port; port 0 lets the kernel choose a free one."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does: TIME_WAIT is no obstacle
    try:
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise PortInUse(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def listen_consecutive(n: int, host: str = "127.0.0.1", attempts: int = 200) -> list[socket.socket]:
    """n listening sockets on consecutive ports (the simulators sit at KYMA_SIM_BASE_PORT + 0, 1, 2)."""
    for _ in range(attempts):
        held = [listen(host)]
        base = held[0].getsockname()[1]
        try:
            if base + n - 1 > 65535:
                raise PortInUse(0, "the block would run past the last port")
            held += [listen(host, port) for port in range(base + 1, base + n)]
            return held
        except PortInUse:
            for s in held:
                s.close()
    raise PortInUse(0, f"no {n} consecutive free ports on {host}")


def gunicorn_command(target: str, bind: str | Sequence[str], workers: int, log_level: str = "info",
                     connections: int = DEFAULT_WORKER_CONNECTIONS) -> list[str]:
    """gunicorn with the gateway's gevent workers, no preload, no control socket, and the hooks that
    keep the workers' Prometheus files (kyma.gunicorn_hooks, which also names the worker class).

    Each worker holds up to `connections` at once on each listener (a stream holds one for its whole length); the
    listen backlog queues what arrives faster than the workers accept.

    gunicorn itself believes X-Forwarded-Proto (and -Ssl) from 127.0.0.1 by default; it is told to
    believe no one, so that the gateway alone decides, from KYMA_TRUSTED_PROXIES.
    """
    binds = [bind] if isinstance(bind, str) else list(bind)
    return [sys.executable, "-m", "gunicorn", "-c", str(gunicorn_hooks.PATH), "-w", str(workers),
            "--worker-connections", str(connections), "--backlog", str(LISTEN_BACKLOG),
            "--no-control-socket", "--forwarded-allow-ips", "",
            "--log-level", log_level, *(arg for b in binds for arg in ("-b", b)), target]


@dataclass
class Server:
    """A gunicorn master started here: where it listens and, when captured, where it logs."""

    popen: subprocess.Popen
    port: int
    log: Path | None = None
    env: dict = field(default_factory=dict)
    name: str = ""
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        """Wait until it answers on `path`; raise with the end of its log if it exits or never does."""
        try:
            wait_answering(f"{self.url}{path}", self.popen, timeout)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            tail = self.log.read_text(errors="replace")[-3000:] if self.log and self.log.exists() else ""
            raise type(exc)(f"{exc}; the end of {self.log}:\n{tail}" if tail else str(exc)) from None

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10) -> None:
        """Signal its process group (SIGTERM: gunicorn's graceful stop); SIGKILL what is left."""
        stop([self], sig=sig, grace=grace)


def start(target: str, sock: socket.socket | Sequence[socket.socket], env: dict, *, log: Path | None = None,
          workers: int = 1, cwd: Path = ROOT, log_level: str = "info", name: str = "",
          kind: type[Server] = Server, extra: tuple[str, ...] = (),
          spawn: Callable[..., subprocess.Popen] = subprocess.Popen) -> Server:
    """`target` under gunicorn + gevent on `sock` (or on each of several sockets), which the child
    inherits and this process closes; the Server's port is the first socket's.

    Output goes to `log` when given (else to this process's own). The child leads its own process
    group, so a terminal's Ctrl-C reaches only its parent, and dies with the process that started it.
    `spawn` starts it, with subprocess.Popen's arguments (the tests fork theirs from a process that has
    imported gunicorn already).
    """
    socks = [sock] if isinstance(sock, socket.socket) else list(sock)
    fds = [s.fileno() for s in socks]
    host, port = socks[0].getsockname()[:2]
    out = log.open("ab") if log else None
    try:
        # gunicorn's gevent worker gives each listener a pool of its own, of this many connections.
        command = gunicorn_command(target, [f"fd://{fd}" for fd in fds], workers, log_level,
                                   worker_connections(env))
        popen = spawn(command + list(extra), cwd=cwd, env=env, stdout=out,
                      stderr=subprocess.STDOUT if out else None, pass_fds=fds, start_new_session=True,
                      preexec_fn=die_with_parent)
    finally:
        for s in socks:
            s.close()
        if out:
            out.close()
    return kind(popen, port, log, env, name=name, host=host)


def start_simulators(names: Sequence[str], socks: Sequence[socket.socket], env: dict, **options) -> list[Server]:
    """The simulated providers `names` in one gunicorn process, each on its socket of `socks`.

    One Server per provider (its name, its port), all of the same process: stopping one stops them
    all. `env` holds the settings they share; KYMA_SIM_OVERRIDES may set some for one provider.
    """
    ports = [s.getsockname()[1] for s in socks]
    env = {**env, "KYMA_SIM_NAMES": ",".join(names), "KYMA_SIM_PORTS": ",".join(map(str, ports))}
    env.pop("KYMA_SIM_NAME", None)
    first = start(SIMS_TARGET, socks, env, name=names[0], **options)
    return [first, *(replace(first, port=port, name=name) for name, port in zip(names[1:], ports[1:]))]


def wait_answering(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until `url` gives any HTTP answer; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode} before answering")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        try:
            # The socket listens before gunicorn runs: the request simply waits for its first worker.
            requests.get(url, timeout=min(left, 5))
            return
        except requests.RequestException:
            time.sleep(0.05)


def stop(servers: list[Server], sig: int = signal.SIGTERM, grace: float = 10) -> None:
    """Signal each server's process group, wait for its master, SIGKILL the groups still there."""
    servers = list({id(s.popen): s for s in servers}.values())  # providers sharing a process: once each
    for s in servers:
        if s.popen.poll() is None:
            _signal_group(s.popen.pid, sig)
    deadline = time.monotonic() + grace
    for s in servers:
        try:
            s.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(s.popen.pid, signal.SIGKILL)
            s.popen.wait(5)
        _signal_group(s.popen.pid, signal.SIGKILL)  # a worker its master left behind


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
