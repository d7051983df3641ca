"""Several simulated providers in one process, each on a port of its own:
`gunicorn -b fd://A -b fd://B 'kyma.sim.ports:create_sims_app()'`.

KYMA_SIM_NAMES and KYMA_SIM_PORTS list the providers and the ports they answer on, in the same order.
Each provider gets the app create_sim_app() builds from the other KYMA_SIM_* variables, overlaid with
its own from KYMA_SIM_OVERRIDES (JSON: {"name": {"KYMA_SIM_FAULTS": "503:0.1", ...}}), and keeps its
own state (fault draws, outage, counters, prompt cache) as a process of its own would. One process
boots Python, Flask and gunicorn once for all of them.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterable, Mapping

from flask import Flask

from kyma.sim.app import create_sim_app


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def provider_envs(environ: Mapping[str, str]) -> dict[int, dict]:
    """Each port's provider environment: the shared variables, its name, its overrides."""
    names, ports = _split(environ.get("KYMA_SIM_NAMES", "")), _split(environ.get("KYMA_SIM_PORTS", ""))
    if not all(port.isdigit() for port in ports):
        raise ValueError(f"KYMA_SIM_PORTS must list port numbers, not {environ.get('KYMA_SIM_PORTS')!r}")
    ports = [int(port) for port in ports]  # compared as numbers: 8001 and 08001 are one port
    if not names or len(names) != len(ports) or len(set(ports)) != len(ports):
        raise ValueError(f"KYMA_SIM_NAMES ({len(names)}) and KYMA_SIM_PORTS ({len(ports)}) must list "
                         "one port per provider, each port once")
    overrides = json.loads(environ.get("KYMA_SIM_OVERRIDES") or "{}")
    if (not isinstance(overrides, dict) or set(overrides) - set(names)
            or not all(isinstance(v, dict) for v in overrides.values())):
        raise ValueError("KYMA_SIM_OVERRIDES must be a JSON object of objects keyed by names in KYMA_SIM_NAMES")
    return {port: {**environ, "KYMA_SIM_NAME": name, **{k: str(v) for k, v in overrides.get(name, {}).items()}}
            for name, port in zip(names, ports)}


def local_port(environ: dict) -> int:
    """The port the request's connection arrived on, from the connection itself.

    gunicorn's SERVER_PORT is the listener's port on TCP, but a PROXY protocol header or (on a Unix
    socket) the Host header can set it; the accepted socket cannot be told otherwise.
    """
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        return sock.getsockname()[1]
    return int(environ.get("SERVER_PORT") or 0)  # a test client, with no socket


class PortDispatch:
    """A WSGI app that hands each request to the provider app listening on its connection's port."""

    def __init__(self, apps: Mapping[int, Flask]):
        self.apps = dict(apps)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        app = self.apps.get(local_port(environ))
        if app is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no simulated provider on this port\n"]
        return app(environ, start_response)


def create_sims_app(environ: Mapping[str, str] | None = None) -> PortDispatch:
    """The providers KYMA_SIM_NAMES names, each answering on its port of KYMA_SIM_PORTS."""
    env = os.environ if environ is None else environ
    return PortDispatch({port: create_sim_app(penv) for port, penv in provider_envs(env).items()})
