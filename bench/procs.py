"""Start the benchmark's servers (simulators, gateway) on 127.0.0.1 and stop them by PID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kyma import procs

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Server(procs.Server):
    """A gunicorn master we started, where it listens and where it logs, and its workers' CPU time."""

    def worker_pids(self) -> list[int]:
        """PIDs of the gunicorn workers (the master's children)."""
        return children(self.popen.pid)

    def worker_cpu_seconds(self) -> float:
        """User + system CPU time consumed so far by all workers."""
        return sum(cpu_seconds(p) for p in self.worker_pids())


def children(pid: int) -> list[int]:
    """PIDs of a process's children ([] once it is gone)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pid: int, system: bool = False) -> float:
    """utime + stime of one process from /proc/<pid>/stat (stime alone with `system`)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces: skip past it
    return (int(fields[12]) + (0 if system else int(fields[11]))) / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` and all its live descendants."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu_seconds(p)
        todo.extend(children(p))
    return total


def gunicorn(name: str, target: str, env: dict, workdir: Path, cwd: Path, workers: int = 1) -> Server:
    """Start `target` under gunicorn -k gevent on a free 127.0.0.1 port (not yet waited for)."""
    return procs.start(target, procs.listen(), env, log=workdir / f"{name}.log", workers=workers, cwd=cwd,
                       name=name, kind=Server, extra=("--graceful-timeout", "3"))


def simulator(name: str, workdir: Path, cwd: Path, api_key: str, **sim: str) -> Server:
    """A simulated provider (no latency, no faults unless given)."""
    env = procs.caller_env()
    env.update({"KYMA_SIM_NAME": name, "KYMA_SIM_API_KEY": api_key, "KYMA_SIM_MODELS": "bench-model"})
    env.update({f"KYMA_SIM_{k.upper()}": str(v) for k, v in sim.items()})
    return gunicorn(name, "kyma.sim.app:create_sim_app()", env, workdir, cwd)


def write_gateway_files(workdir: Path, plain_url: str, stream_url: str, key_env: str,
                        plain_model: str, stream_model: str) -> tuple[Path, Path]:
    """A routes file (one model per simulator) and a tiers file with a benchmark tier."""
    routes = {
        "_comment": "kyma bench: one route per benchmark model, straight to a local simulator",
        "providers": {
            "bench-plain": {"base_url": f"{plain_url}/v1", "api_key_env": key_env},
            "bench-stream": {"base_url": f"{stream_url}/v1", "api_key_env": key_env},
        },
        "simulated": [],
        "routes": {
            plain_model: [{"provider": "bench-plain", "model": "bench-model"}],
            stream_model: [{"provider": "bench-stream", "model": "bench-model"}],
        },
    }
    big = 10**9
    tiers = {"_comment": "kyma bench: the default ladder, but the $1000 tier's limits cannot throttle a load test",
             "tiers": [
                 {"level": 0, "name": "Tier 0", "min_purchased_usd": 0, "rpm": 30, "per_model_rpm": 25,
                  "tpm": 200000, "max_tokens_per_request": 200000},
                 {"level": 4, "name": "Bench", "min_purchased_usd": 1000, "rpm": big, "per_model_rpm": big,
                  "tpm": big, "max_tokens_per_request": 10000000},
             ]}
    routes_path, tiers_path = workdir / "routes.json", workdir / "tiers.json"
    routes_path.write_text(json.dumps(routes, indent=1))
    tiers_path.write_text(json.dumps(tiers, indent=1))
    return routes_path, tiers_path


def gateway_env(workdir: Path, routes: Path, tiers: Path, key_env: str, upstream_key: str,
                extra: dict[str, str]) -> dict:
    """The gateway's environment: its own SQLite file, the bench routes and tiers, defaults otherwise."""
    env = procs.caller_env()
    env.update({
        "KYMA_INSTANCE_DIR": str(workdir),
        "KYMA_DATABASE_URL": f"sqlite:///{workdir / 'kyma.db'}",
        "KYMA_SECRET_KEY": "bench-secret",
        "KYMA_ROUTES": str(routes),
        "KYMA_TIERS": str(tiers),
        "KYMA_SIMULATORS": "off",
        key_env: upstream_key,
    })
    env.update(extra)
    return env


def flask(cwd: Path, env: dict, *args: str) -> str:
    """Run `flask --app app ARGS` against the gateway's database; its stdout."""
    done = subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()
