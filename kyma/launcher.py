"""`make run`: start three simulated providers, then the gateway; stop them all when it exits.

    python -m kyma.launcher [--gateway-app app:app]

Simulators listen on 127.0.0.1 at KYMA_SIM_BASE_PORT + 0/1/2, all three in one gunicorn process
(none when KYMA_SIMULATORS=off);
the gateway runs under gunicorn with gevent workers on KYMA_HOST:KYMA_PORT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from kyma import gunicorn_hooks, procs
from kyma.capacity import ensure_fd_limit
from kyma.config import Settings


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


def catalog_ids(path: Path) -> list[str]:
    """Model ids in the catalog file (the simulators list them on /v1/models)."""
    try:
        return [m["id"] for m in json.loads(path.read_text()).get("models", []) if "id" in m]
    except (OSError, ValueError, AttributeError):
        return []


def profile_env(profile: SimProfile) -> dict:
    """The settings of one simulated provider that differ from the others'."""
    return {"KYMA_SIM_LATENCY_MS": str(profile.latency_ms), "KYMA_SIM_TOKENS_PER_SEC": str(profile.tokens_per_sec),
            "KYMA_SIM_FAULTS": profile.faults}


def simulator_env(settings: Settings) -> dict:
    """Environment of the simulators' process: what they share, and each profile as its overrides."""
    # Not the gateway's metrics settings either: a simulator's gunicorn would empty the gateway's metric files.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KYMA_SIM_") and k not in ("KYMA_METRICS", gunicorn_hooks.VARIABLE)}
    env.update({
        # A simulated timeout must outlast the gateway's first-byte timeout to trigger it.
        "KYMA_SIM_TIMEOUT_SECONDS": str(settings.first_byte_timeout + 5),
        "KYMA_SIM_MODELS": ",".join(catalog_ids(settings.catalog_path)),
        "KYMA_SIM_OVERRIDES": json.dumps({p.name: profile_env(p) for p in PROFILES}),
    })
    return env


def start_simulators(settings: Settings) -> list[procs.Server]:
    """Start the simulated providers on KYMA_SIM_BASE_PORT + 0, 1, 2 (their ports bound here first)."""
    socks = [procs.listen("127.0.0.1", settings.sim_base_port + i) for i in range(len(PROFILES))]
    return procs.start_simulators([p.name for p in PROFILES], socks, simulator_env(settings), log_level="warning")


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
    sims: list[procs.Server] = []
    gateway: procs.Server | None = None
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True
        if gateway is not None and gateway.popen.poll() is None:
            gateway.popen.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ensure_fd_limit(settings.worker_connections)  # the simulators and gunicorn inherit it
        # Bound before anything starts: a port in use is reported at once, by its number.
        gateway_sock = procs.listen(settings.host, settings.port)
        if settings.simulators:
            sims = start_simulators(settings)
            for sim in sims:
                sim.wait_ready("/v1/models")
        if stopping:
            gateway_sock.close()
            return 0
        env = dict(os.environ)
        gunicorn_hooks.prepare_metrics_dir(env, settings.instance_dir)  # with KYMA_METRICS on: emptied, named for the workers
        gateway = procs.start(gateway_app, gateway_sock, env, workers=settings.workers)
        gateway.wait_ready("/healthz")
        print(banner(settings), flush=True)
        gateway.popen.wait()
        return 0 if stopping else gateway.popen.returncode
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"kyma launcher: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        procs.stop([gateway] if gateway is not None else [])
        procs.stop(sims)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m kyma.launcher`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway-app", default="app:app", help="WSGI target of the gateway (default app:app)")
    args = parser.parse_args(argv)
    return run(Settings.from_env(), args.gateway_app)


if __name__ == "__main__":
    sys.exit(main())
