"""Start a throw-away Kyma gateway for a notebook, or use the one KYMA_BASE_URL names.

A notebook calls `gw = _gateway.start()` in its first cell and `gw.stop()` in its last one.
Locally that is three simulated providers (one process) plus the gateway under gunicorn (gevent workers),
on free 127.0.0.1 ports, with a fresh SQLite database in a temporary folder. Every process is
stopped by its PID, at `gw.stop()` or, if the notebook dies first, by an atexit handler.

Under nbval (notebooks/conftest.py) the notebooks with the default settings share one such stack,
started once for the pass and named by KYMA_NOTEBOOK_STACK: booting it costs more CPU than most
notebooks' own requests. Each signs up its own accounts; one that shows gateway-wide numbers
(04's uptime and status) asks for a fresh gateway of its own.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

# The repository root is on PYTHONPATH (notebooks/conftest.py under nbval, `make notebooks` for Lab).
from kyma import procs
from tests.servers import flask_cli, gateway_env, start_gateway, start_stack

# Notebook defaults: short upstream timeouts keep the fault demos quick, and a high breaker
# threshold keeps routing predictable in every notebook but 06, which sets its own.
DEFAULT_GATEWAY_SETTINGS = {"KYMA_FIRST_BYTE_TIMEOUT": "2", "KYMA_IDLE_TIMEOUT": "2",
                            "KYMA_BREAKER_FAILURES": "1000"}
DEFAULT_SIM_SETTINGS = {"KYMA_SIM_TIMEOUT_SECONDS": "5"}
# A JSON file describing the stack the notebooks pass shares (written by shared_stack()).
SHARED_STACK = "KYMA_NOTEBOOK_STACK"


class NeedsLocalGateway(RuntimeError):
    """A step that needs the simulators or the operator CLI, run against a remote KYMA_BASE_URL."""


@dataclass
class Gateway:
    """A running gateway: where it listens and, when the notebook started it, its processes."""

    url: str
    simulators: dict[str, str] = field(default_factory=dict)
    servers: list[procs.Server] = field(default_factory=list)
    env: dict | None = None
    workdir: Path | None = None

    @property
    def api_url(self) -> str:
        """The base URL for the openai SDK (the gateway origin plus /v1)."""
        return f"{self.url}/v1"

    @property
    def local(self) -> bool:
        """True when the gateway runs here (started by this notebook or shared by the notebooks pass)."""
        return self.env is not None

    def _require_local(self, what: str) -> None:
        if not self.local:
            raise NeedsLocalGateway(f"{what} needs the gateway this notebook starts (unset KYMA_BASE_URL)")

    def credits_add(self, email: str, usd: str, *, grant: bool = False) -> str:
        """Run the operator command `flask --app app credits add EMAIL USD` against this gateway's database."""
        self._require_local("credits add")
        done = flask_cli(self.env, "credits", "add", email, usd, *(["--grant"] if grant else []))
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip() or done.stdout.strip())
        return done.stdout.strip()

    def sim_stats(self, name: str) -> dict:
        """GET /sim/stats of one simulated provider: requests that reached it, by fault and model."""
        self._require_local("simulator stats")
        return requests.get(f"{self.simulators[name]}/sim/stats", timeout=5).json()

    def reset_sims(self) -> None:
        """Zero every simulator's counters."""
        self._require_local("simulator reset")
        for url in self.simulators.values():
            requests.post(f"{url}/sim/reset", timeout=5).raise_for_status()

    def stop(self) -> None:
        """Stop every process this notebook started (by PID) and delete its temporary folder."""
        procs.stop(self.servers, sig=signal.SIGINT)  # SIGINT: gunicorn's quick shutdown
        self.servers.clear()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def start(gateway_settings: dict | None = None, sim_settings: dict | None = None,
          workers: int = 1, *, fresh: bool = False) -> Gateway:
    """KYMA_BASE_URL's gateway when set; else simulators plus a gunicorn gateway started here.

    Under nbval a notebook with the default settings uses the stack the pass shares; with
    `fresh=True` it gets a gateway and database of its own, in front of the shared simulators.
    Settings of its own give a notebook the whole stack to itself (it may also break or reset
    the simulators, as the reliability notebook does).
    """
    remote = os.environ.get("KYMA_BASE_URL")
    if remote:
        return Gateway(url=remote.rstrip("/"))
    shared = _shared() if not (gateway_settings or sim_settings or workers != 1) else None
    if shared is not None and not fresh:
        return shared
    return _start_local(gateway_settings or {}, sim_settings or {}, workers, sims=shared)


def _start_local(gateway_settings: dict, sim_settings: dict, workers: int,
                 sims: Gateway | None = None) -> Gateway:
    """The gateway and, unless `sims` lends theirs, three simulators, their boots overlapping;
    all stopped again if one fails."""
    workdir = Path(tempfile.mkdtemp(prefix="kyma-notebook-"))
    gw = Gateway(url="", workdir=workdir)
    atexit.register(gw.stop)  # also when a cell fails and the kernel simply exits
    settings = {**DEFAULT_GATEWAY_SETTINGS, **gateway_settings}
    try:
        if sims is None:
            sim_env = {**DEFAULT_SIM_SETTINGS, **sim_settings}
            gateway, servers = start_stack(workdir, sim_env, workers, **settings)
            gw.servers = [*servers, gateway]
            gw.simulators = {sim.name: sim.url for sim in servers}
        else:
            env = gateway_env(workdir, int(sims.env["KYMA_SIM_BASE_PORT"]), **settings)
            gateway = start_gateway(workdir, env, workers)
            gw.servers = [gateway]
            gw.simulators = dict(sims.simulators)
    except (OSError, RuntimeError, TimeoutError) as exc:
        gw.workdir = None  # keep the logs for the error message below
        gw.stop()
        raise RuntimeError(f"the notebook gateway did not start: {exc} (logs in {workdir})") from exc
    gw.url, gw.env = gateway.url, gateway.env
    return gw


def shared_stack() -> Gateway:
    """A stack with the default settings for the notebooks pass to share: started here, and named in
    this process's environment (so in every kernel started after it); gw.stop() stops it."""
    gw = _start_local({}, {}, 1)
    described = gw.workdir / "stack.json"
    described.write_text(json.dumps({
        "url": gw.url, "simulators": gw.simulators,
        "env": {k: v for k, v in gw.env.items() if k.startswith(procs.CALLER_PREFIXES)}}))
    os.environ[SHARED_STACK] = str(described)
    return gw


def _shared() -> Gateway | None:
    """The stack the notebooks pass shares, if this kernel was started under it; nothing to stop."""
    described = os.environ.get(SHARED_STACK)
    if not described:
        return None
    stack = json.loads(Path(described).read_text())
    env = procs.caller_env()
    return Gateway(url=stack["url"], simulators=stack["simulators"], env={**env, **stack["env"]})


def unique_email(name: str) -> str:
    """A fresh address, so a notebook can run twice against the same KYMA_BASE_URL."""
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"
