"""A quick side-by-side of gateways on SQLite and on PostgreSQL + Redis: req/s and CPU per request.

Starts the peer harness's fake upstream and one target per spec (kyma_target.sh), then runs wrk
against each in turn, ROUNDS times, alternating, so that a noisy machine weighs on all alike. For
each run it reads the CPU time of the target's process tree (launcher, gunicorn master and
workers) from /proc, and for a PostgreSQL target that of the server backends on its database.

Usage: .venv/bin/python -m bench.pg_ab NAME=PROJECT_DIR[:pg] ... [--peers DIR] [--rounds N] [-c 32,128] [-d 5s]
The harness is BENCH_PEERS (default ../shared/bench-peers), its Python BENCH_PY (default its setup's venv).
A wrk run in which any request failed or got a 4xx/5xx answer stops the bench, with the counts.
Every server listens on 127.0.0.1 and is stopped by its PID at the end; the databases are dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench import load, procs
from bench.streams import PEERS_PYTHON
from kyma.procs import listen_consecutive
from tests import pg

ROOT = Path(__file__).resolve().parent.parent

BODY = json.dumps({"model": "glm-4.7-flash", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16})


def backends_cpu(dbname: str) -> float:
    """utime + stime (seconds) of the PostgreSQL backends connected to `dbname` now."""
    with pg._admin() as admin:
        pids = [r[0] for r in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (dbname,))]
    return sum(procs.cpu_seconds(pid) for pid in pids)


def seconds(text: str) -> int:
    """A duration given as N or Ns, a whole number of seconds above zero (wrk takes no fractions)."""
    digits = text.removesuffix("s")
    if not digits.isdigit() or int(digits) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds (5 or 5s)")
    return int(digits)


def wrk(url: str, api_key: str, connections: int, duration: float) -> dict:
    """One wrk run's BENCH_JSON summary; raise when wrk failed or any request got a 4xx/5xx or no answer."""
    summary = load.wrk_summary(url, BODY, f"Bearer {api_key}", connections, duration, threads=2)
    # A rate that counts refused or failed requests would flatter the target: such a run is no result.
    bad = {k: summary[k] for k in ("connect", "read", "write", "timeout", "status") if summary[k]}
    if bad or not summary["requests"]:
        raise RuntimeError(f"wrk c{connections} {url}: {summary['requests']} requests, errors {bad} "
                           "(status: 4xx/5xx answers)")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", type=Path,
                    default=Path(os.environ.get("BENCH_PEERS", ROOT.parent / "shared" / "bench-peers")),
                    help="the peer harness (its upstream.py and kyma_target.sh); default BENCH_PEERS")
    ap.add_argument("targets", nargs="+", help="NAME=PROJECT_DIR, with :pg for PostgreSQL + Redis")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-c", default="32,128")
    ap.add_argument("-d", default="5s", type=seconds, help="each run's length, in seconds (5 or 5s)")
    args = ap.parse_args()
    if any("=" not in spec for spec in args.targets):
        ap.error("each target is NAME=PROJECT_DIR[:pg]; the harness is --peers or BENCH_PEERS")
    bench_py = PEERS_PYTHON
    if not (args.peers / "kyma_target.sh").exists() or not bench_py.exists() or not load.have_wrk():
        raise SystemExit(f"pg_ab: needs the peer harness at {args.peers} (BENCH_PEERS), set up with its "
                         f"setup_reference.sh ({bench_py}, wrk)")
    work = Path(tempfile.mkdtemp(prefix="kyma-pgab."))
    socks = listen_consecutive(1 + len(args.targets))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    started: list[int] = []
    created: list[tuple[str, str]] = []
    env = dict(os.environ, UPSTREAM_PORT=str(ports[0]))
    up = subprocess.Popen([str(bench_py), f"{args.peers}/upstream.py", "--host", "127.0.0.1", "--port", str(ports[0])],
                          stdout=open(work / "upstream.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    started.append(up.pid)
    targets = []
    try:
        for spec, port in zip(args.targets, ports[1:]):
            name, _, where = spec.partition("=")
            project, _, kind = where.partition(":")
            tenv = dict(env)
            dbname = None
            if kind == "pg":
                url, prefix = pg.create_database("bench_"), pg.new_redis_prefix()
                created.append((url, prefix))
                dbname = url.rsplit("/", 1)[1]
                tenv.update(TARGET_DATABASE_URL=url, TARGET_REDIS_URL=pg.REDIS_URL, KYMA_REDIS_PREFIX=prefix,
                            KYMA_DATABASE_POOL_SIZE="8")
            out = subprocess.run([f"{args.peers}/kyma_target.sh", project, str(work), str(port), "2", name],
                                 cwd=project, env=tenv, capture_output=True, text=True, check=True).stdout
            pid = int((work / name / "pid").read_text())
            started.append(pid)
            target = json.loads(out)[0]
            targets.append((name, target, pid, dbname))
        results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        for c in [int(x) for x in args.c.split(",")]:
            for _ in range(args.rounds):
                for name, target, pid, dbname in targets:
                    cpu0, pg0 = procs.tree_cpu_seconds(pid), backends_cpu(dbname) if dbname else 0.0
                    summary = wrk(target["base_url"] + "/chat/completions", target["api_key"], c, args.d)
                    cpu1, pg1 = procs.tree_cpu_seconds(pid), backends_cpu(dbname) if dbname else 0.0
                    n = summary["requests"]
                    rps = n / (summary["duration_us"] / 1e6)
                    results.setdefault((name, c), []).append(
                        (rps, (cpu1 - cpu0) / n * 1000, (pg1 - pg0) / n * 1000))
                    print(f"c{c} {name}: {rps:.0f} req/s, gateway {(cpu1 - cpu0) / n * 1000:.3f} ms CPU/req, "
                          f"postgres {(pg1 - pg0) / n * 1000:.3f} ms/req", flush=True)
        print("medians:")
        for (name, c), rows in results.items():
            med = [statistics.median(col) for col in zip(*rows)]
            print(f"c{c} {name}: {med[0]:.0f} req/s, gateway {med[1]:.3f} ms CPU/req, postgres {med[2]:.3f} ms/req")
    finally:
        for pid in started:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(3)
        for pid in started:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for url, prefix in created:
            pg.drop_database(url)
            pg.delete_redis_prefix(prefix)


if __name__ == "__main__":
    main()
