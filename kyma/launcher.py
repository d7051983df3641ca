"""`make run`: start three simulated providers, then the gateway; stop them all when it exits.

    python -m kyma.launcher [--gateway-app app:app]

Simulators listen on 127.0.0.1 at KYMA_SIM_BASE_PORT + 0/1/2 (none when KYMA_SIMULATORS=off);
the gateway runs under gunicorn with gevent workers on KYMA_HOST:KYMA_PORT.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from kyma.capacity import DEFAULT_WORKER_CONNECTIONS, LISTEN_BACKLOG, ensure_fd_limit, worker_connections
from kyma.config import ROOT, Settings

PR_SET_PDEATHSIG = 1  # Linux prctl option: signal the child when its parent dies


@dataclass(frozen=True)
class SimProfile:
    """One simulated provider's personality for `make run`."""

    name: str
    latency_ms: int
    tokens_per_sec: int
    faults: str


# Realistic, small numbers: a demo should feel like real providers, not like a stress test.
PROFILES = (
    SimProfile("sim-alpha", latency_ms=20, tokens_per_sec=400, faults=""),
    SimProfile("sim-beta", latency_ms=60, tokens_per_sec=250, faults="500:0.01,503:0.01"),
    SimProfile("sim-gamma", latency_ms=150, tokens_per_sec=150,
               faults="429:0.02,502:0.01,timeout:0.01,cut:0.01"),
)


def die_with_parent() -> None:
    """In a child (preexec_fn): get SIGTERM when the process that started it dies, even by SIGKILL."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the launcher's own signal handling still stops the children


def _spawn(cmd: list[str], env: dict) -> subprocess.Popen:
    # Own process group: a terminal's Ctrl-C reaches only the launcher, which stops children in order.
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, preexec_fn=die_with_parent)


def catalog_ids(path: Path) -> list[str]:
    """Model ids in the catalog file (the simulators list them on /v1/models)."""
    try:
        return [m["id"] for m in json.loads(path.read_text()).get("models", []) if "id" in m]
    except (OSError, ValueError, AttributeError):
        return []


def simulator_env(profile: SimProfile, settings: Settings) -> dict:
    """Environment of one simulator process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYMA_SIM_")}
    env.update({
        "KYMA_SIM_NAME": profile.name,
        "KYMA_SIM_LATENCY_MS": str(profile.latency_ms),
        "KYMA_SIM_TOKENS_PER_SEC": str(profile.tokens_per_sec),
        "KYMA_SIM_FAULTS": profile.faults,
        # A simulated timeout must outlast the gateway's first-byte timeout to trigger it.
        "KYMA_SIM_TIMEOUT_SECONDS": str(settings.first_byte_timeout + 5),
        "KYMA_SIM_MODELS": ",".join(catalog_ids(settings.catalog_path)),
    })
    return env


def gunicorn_command(target: str, bind: str, workers: int, log_level: str = "info",
                     connections: int = DEFAULT_WORKER_CONNECTIONS) -> list[str]:
    """gunicorn with gevent workers, no preload and no control socket.

    Each worker holds up to `connections` at once (a stream holds one for its whole length); the
    listen backlog queues what arrives faster than the workers accept.

    gunicorn itself believes X-Forwarded-Proto (and -Ssl) from 127.0.0.1 by default; it is told to
    believe no one, so that the gateway alone decides, from KYMA_TRUSTED_PROXIES.
    """
    return [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", str(workers),
            "--worker-connections", str(connections), "--backlog", str(LISTEN_BACKLOG),
            "--no-control-socket", "--forwarded-allow-ips", "",
            "--log-level", log_level, "-b", bind, target]


def start_simulators(settings: Settings) -> list[subprocess.Popen]:
    """Start the simulated providers on KYMA_SIM_BASE_PORT + 0, 1, 2."""
    return [_spawn(gunicorn_command("kyma.sim.app:create_sim_app()",
                                    f"127.0.0.1:{settings.sim_base_port + i}", 1, "warning",
                                    settings.worker_connections),
                   simulator_env(profile, settings))
            for i, profile in enumerate(PROFILES)]


# Throw-away servers (tests, notebooks, benchmarks) listen at or above this port.
FREE_PORT_FLOOR = 10000


def ephemeral_ports() -> range:
    """The ports the kernel gives outgoing connections (Linux's setting, else its default)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_ports(n: int = 1) -> int:
    """The first of n consecutive ports free on 127.0.0.1, outside the kernel's ephemeral range.

    A port from that range (the kind bind(0) hands out) can be taken between this check and the
    server's bind by any outgoing connection, the readiness probe's own connect included (a TCP
    self-connect), and gunicorn then exits with "Connection in use"; ports outside it are not
    handed out that way.
    """
    ephemeral = ephemeral_ports()
    spans = [r for r in (range(FREE_PORT_FLOOR, ephemeral.start - n + 1), range(ephemeral.stop, 65536 - n + 1))
             if len(r)]
    if not spans:  # the ephemeral range covers them all: pick from it (callers retry a port taken meanwhile)
        spans = [range(1024, 65536 - n + 1)]
    for _ in range(200):
        span = random.choices(spans, weights=[len(r) for r in spans])[0]
        base = random.choice(span)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))  # no SO_REUSEADDR: a port in TIME_WAIT counts as taken
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports on 127.0.0.1")


class PortTaken(RuntimeError):
    """A server exited because another process held its port (gunicorn: "Connection in use")."""


@dataclass
class Started:
    """A server process started on 127.0.0.1 (tests, notebooks, benchmarks): where it listens and logs."""

    popen: subprocess.Popen
    port: int
    log: Path
    env: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM it by PID (a gunicorn master stops its workers); SIGKILL if it lingers."""
        stop([self.popen])

    def wait_started(self, path: str, timeout: float = 30) -> None:
        """Wait until this very server listens and answers on `path`; raise with its log's end if not.

        gunicorn's "Listening at … (pid)" line comes first: while a taken port's bind is retried
        (for five seconds), whatever holds the port could otherwise answer the probe for it.
        """
        deadline = time.monotonic() + timeout
        mine = f"Listening at: {self.url} ({self.popen.pid})"
        while mine not in self._log_text() and self.popen.poll() is None:
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.url} did not start listening within {timeout}s")
            time.sleep(0.05)
        try:
            wait_answering(f"{self.url}{path}", self.popen, max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            self.stop()
            raise
        except RuntimeError as exc:
            tail = self._log_text()[-3000:]
            kind = PortTaken if "Connection in use" in tail else RuntimeError
            raise kind(f"{exc}; the end of {self.log}:\n{tail}") from None

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def spawn_logged(target: str, port: int, env: dict, log: Path, workers: int = 1, cwd: Path = ROOT) -> subprocess.Popen:
    """A throw-away gunicorn (tests, notebooks, benchmarks) on 127.0.0.1:port, its output in `log`.

    It logs at info (wait_started reads the "Listening at" line), and dies with the process that
    started it, so a crashed test run or notebook leaves no server behind.
    """
    cmd = gunicorn_command(target, f"127.0.0.1:{port}", workers, connections=worker_connections(env))
    cmd += ["--graceful-timeout", "3"]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent)


def wait_answering(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until `url` gives any HTTP answer; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode} before answering")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(procs: list[subprocess.Popen], grace: float = 10, sig: int = signal.SIGTERM) -> None:
    """Signal each process by PID (SIGTERM: gunicorn's graceful stop), wait for it, SIGKILL what is left."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def banner(settings: Settings) -> str:
    """What a new user needs: the URL, a first key, and SDK settings."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{host}:{settings.port}"
    sims = ", ".join(f"{p.name} :{settings.sim_base_port + i}" for i, p in enumerate(PROFILES))
    lines = [
        f"Kyma gateway on {url}",
        f"Simulated providers: {sims}" if settings.simulators else "Simulated providers: off",
        "Get a first API key:",
        f"  curl -s {url}/v1/auth/register -H 'content-type: application/json' "
        "-d '{\"email\": \"you@example.com\", \"password\": \"a good password\"}'",
        f"Then: export OPENAI_BASE_URL={url}/v1 OPENAI_API_KEY=ky-...   (Ctrl-C stops everything)",
    ]
    return "\n".join(lines)


def run(settings: Settings, gateway_app: str) -> int:
    """Start simulators and gateway, block until the gateway exits, then stop the simulators."""
    sims: list[subprocess.Popen] = []
    gateway: subprocess.Popen | None = None
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ensure_fd_limit(settings.worker_connections)  # the simulators and gunicorn inherit it
        if settings.simulators:
            sims = start_simulators(settings)
            for i, proc in enumerate(sims):
                wait_answering(f"http://127.0.0.1:{settings.sim_base_port + i}/v1/models", proc)
        if stopping:
            return 0
        gateway = _spawn(gunicorn_command(gateway_app, f"{settings.host}:{settings.port}", settings.workers,
                                          connections=settings.worker_connections), dict(os.environ))
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        wait_answering(f"http://{host}:{settings.port}/healthz", gateway)
        print(banner(settings), flush=True)
        gateway.wait()
        return 0 if stopping else gateway.returncode
    except (RuntimeError, TimeoutError) as exc:
        print(f"kyma launcher: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop([p for p in [gateway] if p is not None])
        stop(sims)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m kyma.launcher`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway-app", default="app:app", help="WSGI target of the gateway (default app:app)")
    args = parser.parse_args(argv)
    return run(Settings.from_env(), args.gateway_app)


if __name__ == "__main__":
    sys.exit(main())
