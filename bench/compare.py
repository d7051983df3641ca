"""`bench/compare.py`: two versions of the gateway against each other and the simulator, in one run.

A change to the hot path moves the numbers by less than the noise between two `bench/run.py`
runs on these shared 2-core machines, so it is compared side by side instead: the base version
(a git revision, default HEAD, unpacked into a scratch directory) and the working tree each run as
their own gunicorn gateway in front of the same simulators, and every round calls base, candidate
and the simulator directly in turn. Worker CPU is read per gateway, so each gets its own.

    .venv/bin/python -m bench.compare                # HEAD against the working tree
    .venv/bin/python -m bench.compare --base-rev HEAD~3 --rounds 600
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import procs
from bench.load import have_wrk, run_wrk
from bench.probe import (WARMUP, Target, interleaved, percentile, plain_request,
                         stream_request)
from bench.run import RESULTS, UPSTREAM_KEY, bodies, open_account, start_gateway
from kyma.config import DEFAULT_WORKERS

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-rev", default="HEAD", help="git revision of the base version (default HEAD)")
    p.add_argument("--base-root", type=Path, help="a source tree to use as the base instead of a revision")
    p.add_argument("--base-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the base gateway (repeatable; e.g. GUNICORN_CMD_ARGS=...)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the candidate gateway (repeatable)")
    p.add_argument("--rounds", type=int, default=400, help="interleaved rounds of plain requests")
    p.add_argument("--stream-rounds", type=int, default=150, help="interleaved rounds of streams")
    p.add_argument("--seconds", type=int, default=0, help="wrk seconds per side at 32 connections (0: skip)")
    p.add_argument("--stream-rate", type=float, default=200, help="streaming simulator tokens/s")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"workers of each gateway (default {DEFAULT_WORKERS}, as `make run`)")
    return p.parse_args(argv)


def unpack(rev: str, into: Path) -> Path:
    """`git archive REV` unpacked into a directory: the base version's source tree."""
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def phase(gateways: dict, direct: Target, targets: dict, rounds: int, measure) -> dict:
    """Interleaved rounds over every gateway and the simulator; p50 and worker CPU per side."""
    cpu0 = {n: g.worker_cpu_seconds() for n, g in gateways.items()}
    samples = interleaved([*targets.values(), direct], rounds, measure, rotate=True)
    out = {}
    for name, s in samples.items():
        row = {"p50_ms": percentile(s.values, 50) * 1000, "p99_ms": percentile(s.values, 99) * 1000,
               "errors": len(s.errors)}
        if name in gateways:
            row["cpu_ms"] = (gateways[name].worker_cpu_seconds() - cpu0[name]) * 1000 / (rounds + WARMUP)
        out[name] = row
    return out


def main(argv=None) -> int:
    """Start the simulators and both gateways, run the phases, print base against candidate."""
    args = parse_args(argv)
    work = RESULTS / "compare"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    scratch = Path(tempfile.mkdtemp(prefix="kyma-base-"))
    servers: list[procs.Server] = []
    try:
        base_root = args.base_root or unpack(args.base_rev, scratch)
        plain = procs.simulator("sim-plain", work, ROOT, UPSTREAM_KEY)
        stream = procs.simulator("sim-stream", work, ROOT, UPSTREAM_KEY, tokens_per_sec=str(args.stream_rate))
        servers += [plain, stream]
        for s in (plain, stream):
            s.wait_ready("/v1/models")
        gateways = {}
        for name, root, env in (("base", base_root, args.base_env), ("candidate", ROOT, args.env)):
            gateways[name] = start_gateway(name, root, work / name, plain.url, stream.url, env, args.workers)
            servers.append(gateways[name])
            gateways[name].wait_ready("/healthz")
        keys = {n: open_account(g, ROOT if n == "candidate" else base_root) for n, g in gateways.items()}
        b = bodies()
        json_h = {"Content-Type": "application/json"}
        up = {**json_h, "Authorization": f"Bearer {UPSTREAM_KEY}"}

        def targets(body: str) -> dict:
            return {n: Target(n, f"{g.url}/v1/chat/completions", b[body],
                              {**json_h, "Authorization": f"Bearer {keys[n]}"})
                    for n, g in gateways.items()}

        results = {
            "plain": phase(gateways, Target("direct", f"{plain.url}/v1/chat/completions", b["sim_plain"], up),
                           targets("gw_plain"), args.rounds, plain_request),
            "stream": phase(gateways, Target("direct", f"{stream.url}/v1/chat/completions", b["sim_stream"], up),
                            targets("gw_stream"), args.stream_rounds, stream_request),
        }
        print(f"{'measure':34} {'base':>8} {'candidate':>10} {'direct':>8} {'cand − base':>12}")
        for ph, label in (("plain", "latency p50, c=1 (ms)"), ("stream", "first content p50, c=1 (ms)")):
            r = results[ph]
            print(f"{label:34} {r['base']['p50_ms']:8.3f} {r['candidate']['p50_ms']:10.3f} "
                  f"{r['direct']['p50_ms']:8.3f} {r['candidate']['p50_ms'] - r['base']['p50_ms']:+12.3f}")
            print(f"{'  p99 (ms)':34} {r['base']['p99_ms']:8.3f} {r['candidate']['p99_ms']:10.3f} "
                  f"{r['direct']['p99_ms']:8.3f} {r['candidate']['p99_ms'] - r['base']['p99_ms']:+12.3f}")
            print(f"{'  worker CPU per request (ms)':34} {r['base']['cpu_ms']:8.3f} {r['candidate']['cpu_ms']:10.3f} "
                  f"{'':8} {r['candidate']['cpu_ms'] - r['base']['cpu_ms']:+12.3f}")
            errors = {n: r[n]['errors'] for n in r if r[n]['errors']}
            if errors:
                print(f"  errors: {errors}")
        if args.seconds and have_wrk():
            for _ in range(2):  # alternate, so a burst of noise does not land on one side only
                for n, g in gateways.items():
                    res = run_wrk(n, g, f"{g.url}/v1/chat/completions", b["gw_plain"], f"Bearer {keys[n]}", 32,
                                  args.seconds)
                    print(f"wrk c=32 {n:9}: {res.rps:6.0f} req/s, CPU {res.cpu_ms_per_request:.3f} ms/request, "
                          f"errors {res.errors + res.non_2xx}")
        return 0
    finally:
        for s in reversed(servers):
            s.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
