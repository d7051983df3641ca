"""`make bench`: the gateway against its simulator, side by side, in one run (about 2 minutes).

Starts two simulators (plain: no latency, no faults; streaming: a token rate) and the gateway
(gunicorn -k gevent, auth + rate limits + credits + request log all on, SQLite), then measures:
added latency p50/p99 at concurrency 1, requests/s at 32 and 128 connections (wrk), the gateway
workers' CPU time per request, added time to first content chunk for streams, errors, and N
concurrent streams through the gateway. Prints a table and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import requests

from bench import procs
from bench.load import have_wrk, run_wrk
from bench.probe import (WARMUP, Target, interleaved, percentile, plain_request,
                         stream_request)
from bench.report import evaluate, render_table
from kyma.config import DEFAULT_WORKERS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PLAIN_MODEL, STREAM_MODEL = "llama-3.3-70b", "gpt-oss-120b"
KEY_ENV, UPSTREAM_KEY = "BENCH_UPSTREAM_KEY", "sk-bench-upstream"
EMAIL = "bench@example.com"


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (the defaults are what `make bench` runs)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"gateway gunicorn workers (default {DEFAULT_WORKERS}, as `make run`)")
    p.add_argument("--seconds", type=int, default=8, help="duration of each wrk run")
    p.add_argument("--sequential", type=int, default=300, help="interleaved pairs at concurrency 1")
    p.add_argument("--stream-pairs", type=int, default=100, help="interleaved stream pairs at concurrency 1")
    p.add_argument("--streams", type=int, default=500, help="concurrent streams through the gateway")
    p.add_argument("--stream-rate", type=float, default=200, help="streaming simulator tokens/s")
    p.add_argument("--gateway-root", type=Path, default=ROOT,
                   help="source tree the gateway runs from (a scratch copy with a change, to compare)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra gateway environment (repeatable)")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    p.add_argument("--keep", action="store_true", help="keep the work directory (database, server logs)")
    return p.parse_args(argv)


def bodies() -> dict[str, bytes]:
    """The request bodies: the gateway's, and the same request as the gateway sends it upstream."""
    plain = {"messages": [{"role": "user", "content": "Say hello in one short sentence."}], "max_tokens": 64}
    stream = {"messages": [{"role": "user", "content": "count to 40"}], "max_tokens": 200, "stream": True}
    many = dict(stream, messages=[{"role": "user", "content": "count to 120"}], max_tokens=400)
    usage = {"stream_options": {"include_usage": True}}  # the gateway always asks upstream for usage
    enc = lambda d: json.dumps(d).encode()  # noqa: E731
    return {
        "gw_plain": enc({"model": PLAIN_MODEL, **plain}), "sim_plain": enc({"model": "bench-model", **plain}),
        "gw_stream": enc({"model": STREAM_MODEL, **stream}),
        "sim_stream": enc({"model": "bench-model", **stream, **usage}),
        "gw_many": enc({"model": STREAM_MODEL, **many}), "sim_many": enc({"model": "bench-model", **many, **usage}),
    }


def start_gateway(name: str, root: Path, workdir: Path, plain_url: str, stream_url: str, env: list[str],
                  workers: int = 1) -> procs.Server:
    """A gateway from `root` with its own database in `workdir`, one model routed to each simulator.

    `env` holds extra KEY=VALUE settings. Not yet waited for.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    routes, tiers = procs.write_gateway_files(workdir, plain_url, stream_url, KEY_ENV, PLAIN_MODEL, STREAM_MODEL)
    extra = dict(kv.split("=", 1) for kv in env)
    environ = procs.gateway_env(workdir, routes, tiers, KEY_ENV, UPSTREAM_KEY, extra)
    procs.flask(root, environ, "init-db")
    return procs.gunicorn(name, "app:app", environ, workdir, root, workers)


def start_servers(args, workdir: Path) -> dict[str, procs.Server]:
    """Both simulators and the gateway, started and answering."""
    servers = {
        "sim_plain": procs.simulator("sim-plain", workdir, args.gateway_root, UPSTREAM_KEY),
        "sim_stream": procs.simulator("sim-stream", workdir, args.gateway_root, UPSTREAM_KEY,
                                      tokens_per_sec=str(args.stream_rate)),
    }
    servers["gateway"] = start_gateway("gateway", args.gateway_root, workdir, servers["sim_plain"].url,
                                       servers["sim_stream"].url, args.env, args.workers)
    for name, s in servers.items():
        s.wait_ready("/healthz" if name == "gateway" else "/v1/models")
    return servers


def open_account(gateway: procs.Server, root: Path) -> str:
    """Register the benchmark account and buy $1000 of credit (the tier with the benchmark limits)."""
    r = requests.post(f"{gateway.url}/v1/auth/register", json={"email": EMAIL, "password": "bench-password"},
                      timeout=30)
    r.raise_for_status()
    procs.flask(root, gateway.env, "credits", "add", EMAIL, "1000")
    return r.json()["api_key"]


def sequential(args, servers, b, key) -> dict:
    """Concurrency 1, gateway and simulator interleaved: latency (plain) and time to first chunk (streams)."""
    gw, plain, stream = servers["gateway"], servers["sim_plain"], servers["sim_stream"]
    json_h = {"Content-Type": "application/json"}
    auth_gw = {**json_h, "Authorization": f"Bearer {key}"}
    auth_up = {**json_h, "Authorization": f"Bearer {UPSTREAM_KEY}"}
    cpu0 = gw.worker_cpu_seconds()
    lat = interleaved([Target("gateway", f"{gw.url}/v1/chat/completions", b["gw_plain"], auth_gw),
                       Target("direct", f"{plain.url}/v1/chat/completions", b["sim_plain"], auth_up)],
                      args.sequential, plain_request)
    cpu_plain = gw.worker_cpu_seconds() - cpu0
    cpu0 = gw.worker_cpu_seconds()
    ttfc = interleaved([Target("gateway", f"{gw.url}/v1/chat/completions", b["gw_stream"], auth_gw),
                        Target("direct", f"{stream.url}/v1/chat/completions", b["sim_stream"], auth_up)],
                       args.stream_pairs, stream_request)
    cpu_stream = gw.worker_cpu_seconds() - cpu0
    return {"latency": _paired(lat, cpu_plain, warmup=WARMUP), "ttfc": _paired(ttfc, cpu_stream, warmup=WARMUP)}


def _paired(samples, gateway_cpu: float, warmup: int) -> dict:
    g, d = samples["gateway"].values, samples["direct"].values
    diffs = [a - b for a, b in zip(g, d)]
    ms = lambda v: round(v * 1000, 3)  # noqa: E731
    calls = len(g) + len(samples["gateway"].errors) + warmup
    return {
        "n": len(g), "gateway_p50_ms": ms(percentile(g, 50)), "gateway_p99_ms": ms(percentile(g, 99)),
        "direct_p50_ms": ms(percentile(d, 50)), "direct_p99_ms": ms(percentile(d, 99)),
        "added_p50_ms": ms(percentile(g, 50) - percentile(d, 50)),
        "added_p99_ms": ms(percentile(g, 99) - percentile(d, 99)),
        "paired_diff_p50_ms": ms(percentile(diffs, 50)),
        "gateway_errors": len(samples["gateway"].errors), "direct_errors": len(samples["direct"].errors),
        "error_samples": (samples["gateway"].errors + samples["direct"].errors)[:5],
        "gateway_cpu_ms_per_request": ms(gateway_cpu / calls) if calls else None,
    }


def throughput(args, servers, b, key) -> list[dict]:
    """wrk at 32 and 128 connections against the gateway and against the simulator directly."""
    gw, plain = servers["gateway"], servers["sim_plain"]
    out = []
    for conns in (32, 128):
        for name, server, body, auth in (("gateway", gw, b["gw_plain"], f"Bearer {key}"),
                                         ("direct", plain, b["sim_plain"], f"Bearer {UPSTREAM_KEY}")):
            res = run_wrk(name, server, f"{server.url}/v1/chat/completions", body, auth, conns, args.seconds)
            row = asdict(res)
            row["cpu_ms_per_request"] = round(res.cpu_ms_per_request, 3)
            out.append(row)
            print(f"  wrk {name:7} c={conns:3}: {res.rps:7.0f} req/s, p50 {res.p50_ms:.1f} ms, "
                  f"errors {res.errors + res.non_2xx}, CPU {res.cpu_ms_per_request:.2f} ms/req", flush=True)
    return out


def many_streams(args, servers, b, key) -> dict:
    """N streams opened at once through the gateway, then the same against the simulator directly."""
    out = {}
    for name, server, body, auth in (("gateway", servers["gateway"], b["gw_many"], f"Bearer {key}"),
                                     ("direct", servers["sim_stream"], b["sim_many"], f"Bearer {UPSTREAM_KEY}")):
        cpu0 = server.worker_cpu_seconds()
        done = subprocess.run([sys.executable, "-m", "bench.stream_client", f"{server.url}/v1/chat/completions",
                               str(args.streams), "0"], cwd=ROOT, input=json.dumps({"body": body.decode(), "auth": auth}),
                              capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"stream load failed: {done.stderr.strip()[-400:]}")
        res = json.loads(done.stdout)
        res["server_cpu_ms_per_stream"] = round((server.worker_cpu_seconds() - cpu0) * 1000 / args.streams, 3)
        out[name] = res
    return out


def logged_failures(workdir: Path) -> list[dict]:
    """Non-200 answers the gateway wrote to its request log, by status and message (read-only)."""
    import apsw

    # Through the gateway's own SQLite (APSW's), read-only: the system library is older.
    con = apsw.Connection(str(workdir / "kyma.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = con.execute("SELECT status, substr(error, 1, 160), count(*) FROM requestlog WHERE status != 200 "
                           "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10").fetchall()
    finally:
        con.close()
    return [{"status": s, "error": e, "count": n} for s, e, n in rows]


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    import os

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def main(argv=None) -> int:
    """Run every phase, print the table, write the JSON; exit 1 when any request failed."""
    args = parse_args(argv)
    if not have_wrk():
        print("bench: wrk is missing; install it with `apt-get install -y wrk`", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = RESULTS / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    started = time.monotonic()
    servers: dict[str, procs.Server] = {}
    try:
        servers = start_servers(args, workdir)
        key = open_account(servers["gateway"], args.gateway_root)
        b = bodies()
        print(f"bench: gateway with {args.workers} worker(s) at {servers['gateway'].url}; measuring…", flush=True)
        seq = sequential(args, servers, b, key)
        load = throughput(args, servers, b, key)
        many = many_streams(args, servers, b, key)
        ledger = procs.flask(args.gateway_root, servers["gateway"].env, "ledger", "check")
        failures = logged_failures(workdir)
    finally:
        for s in reversed(list(servers.values())):
            s.stop()
    result = {
        "machine": machine(), "settings": {k: str(v) for k, v in vars(args).items()},
        "gateway_workers": args.workers, "sequential": seq, "throughput": load, "streams": many,
        "ledger_check": ledger, "request_log_failures": failures, "wall_seconds": round(time.monotonic() - started, 1),
    }
    result["targets"] = evaluate(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(render_table(result))
    print(f"bench: wrote {args.out} in {result['wall_seconds']} s")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    errors = (seq["latency"]["gateway_errors"] + seq["ttfc"]["gateway_errors"]
              + sum(r["errors"] + r["non_2xx"] for r in load) + many["gateway"]["errors"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
