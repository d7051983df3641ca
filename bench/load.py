"""Throughput with wrk (a C load generator, so the client is not the bottleneck)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Server

SCRIPT = Path(__file__).resolve().parent / "post.lua"


@dataclass
class LoadResult:
    """One wrk run: completed requests, rate, latency and errors, plus the server's CPU time."""

    target: str
    connections: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int
    cpu_seconds: float

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds * 1000 / self.requests if self.requests else float("nan")


def have_wrk() -> bool:
    """True when wrk is on PATH (Debian: apt-get install wrk)."""
    return shutil.which("wrk") is not None


def wrk_summary(url: str, body: str, auth: str, connections: int, seconds: float, threads: int = 1) -> dict:
    """One wrk run posting `body` (bench/post.lua) to `url`: its BENCH_JSON summary; raise when wrk failed."""
    env = {**os.environ, "BENCH_BODY": body, "BENCH_AUTH": auth}
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "10s",
           "-s", str(SCRIPT), url]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 30)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return json.loads(line.split(" ", 1)[1])


def run_wrk(name: str, server: Server, url: str, body: bytes, auth: str, connections: int,
            seconds: int) -> LoadResult:
    """Drive `url` with `connections` keep-alive connections for `seconds`; measure server CPU too."""
    cpu_before = server.worker_cpu_seconds()
    s = wrk_summary(url, body.decode(), auth, connections, seconds)
    cpu = server.worker_cpu_seconds() - cpu_before
    secs = s["duration_us"] / 1e6
    errors = s["connect"] + s["read"] + s["write"] + s["timeout"]
    return LoadResult(name, connections, s["requests"], secs, s["requests"] / secs, s["p50_us"] / 1000,
                      s["p99_us"] / 1000, errors, s["status"], cpu)
