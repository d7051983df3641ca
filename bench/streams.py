"""Concurrent streams: how many long streams one gateway instance holds, and how soon each starts.

    .venv/bin/python -m bench.streams --streams 5000 --ramp 3          # starts everything itself
    .venv/bin/python -m bench.streams --url http://127.0.0.1:8080 --model M --streams 2000  # a running gateway (key in STREAMS_KEY)

Starts, on 127.0.0.1, a fake upstream (the peer harness's asyncio `upstream.py` when BENCH_PEERS
points at it, else the project's simulator) whose streams last --chunks x --chunk-ms, and the
gateway (gunicorn, KYMA_WORKERS workers, its own SQLite file unless --env sets a database) in
front of it; then opens N streaming chat completions arriving evenly over --ramp seconds from a
separate gevent client process (bench/stream_client.py) and reports peak open streams, time to
first byte and to first content chunk (median, p95), errors, and the workers' peak memory. With
--direct the same load first goes to the upstream itself, for the added time to first chunk.
Everything it starts is stopped by PID; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from bench import procs
from kyma import procs as kprocs
from kyma.capacity import raise_fd_limit
from kyma.config import DEFAULT_WORKERS

ROOT = kprocs.ROOT

MODEL = "gpt-oss-120b"  # a catalog model, routed to the fake upstream
UPSTREAM_KEY, KEY_ENV = "sk-streams-upstream", "STREAMS_UPSTREAM_KEY"
EMAIL = "streams@example.com"
# The harness's own variable and default (its run_reference.sh reads BENCH_PY too).
PEERS_PYTHON = Path(os.environ.get("BENCH_PY")
                    or Path.home() / ".cache" / "kyma-bench" / "bench-venv" / "bin" / "python")


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=5000, help="concurrent streams (default 5000)")
    p.add_argument("--ramp", type=float, default=3.0, help="seconds over which they arrive (default 3)")
    p.add_argument("--workers", type=int, default=int(os.environ.get("KYMA_WORKERS", DEFAULT_WORKERS)))
    p.add_argument("--chunks", type=int, default=10, help="content chunks per stream (default 10)")
    p.add_argument("--chunk-ms", type=int, default=1000,
                   help="upstream pause before each chunk, the first included (default 1000: 10 s streams)")
    p.add_argument("--direct", action="store_true", help="first the same load against the upstream itself")
    p.add_argument("--peers", type=Path, default=Path(os.environ.get("BENCH_PEERS", ROOT.parent / "shared" / "bench-peers")),
                   help="the peer harness (its upstream.py); the simulator is used when it is absent")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra gateway environment")
    p.add_argument("--pg", action="store_true",
                   help="the gateway on a throw-away PostgreSQL database and Redis prefix (tests/pg.py), dropped after")
    p.add_argument("--url", help="measure this running gateway instead (key in STREAMS_KEY; needs --model)")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="sample each worker with py-spy during the load; collapsed stacks and a summary go here")
    p.add_argument("--cpu-profile", type=Path, metavar="DIR",
                   help="sample the workers' CPU time in-process (bench/cpu_sampler.py); collapsed stacks go here")
    p.add_argument("--perf", type=Path, metavar="FILE",
                   help="also record the workers' on-CPU samples with `perf record` (kernel included) into FILE")
    p.add_argument("--keep", type=Path, metavar="DIR", help="copy the servers' logs here before cleaning up")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "streams.json")
    return p.parse_args(argv)


def client(url: str, n: int, ramp: float, body: dict, auth: str) -> dict:
    """Run bench/stream_client.py (its own, gevent-patched process) and return its JSON."""
    done = subprocess.run([sys.executable, "-m", "bench.stream_client", url, str(n), str(ramp)], cwd=ROOT,
                          input=json.dumps({"body": json.dumps(body), "auth": auth}), capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"stream client failed: {done.stderr.strip()[-600:]}")
    return json.loads(done.stdout)


class Upstream:
    """The fake upstream: the peer harness's upstream.py, or the project's simulator."""

    def __init__(self, args, workdir: Path):
        script = args.peers / "upstream.py"
        self.peers = script.exists() and PEERS_PYTHON.exists()
        self.log = workdir / "upstream.log"
        if self.peers:
            # The harness's upstream binds a port itself: a free one is found here and released for it.
            free = kprocs.listen()
            self.port = free.getsockname()[1]
            free.close()
            self.model = f"fake-model-delay{args.chunk_ms}-chunks{args.chunks}"
            cmd = [str(PEERS_PYTHON), str(script), "--host", "127.0.0.1", "--port", str(self.port)]
            self.proc = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                         start_new_session=True)
            probe = f"{self.url}/health"
        else:  # one token per chunk at 1000/chunk_ms tokens a second; the reply is ~`chunks` tokens long
            self.model = "bench-model"
            server = procs.simulator("sim-streams", workdir, ROOT, UPSTREAM_KEY,
                                     tokens_per_sec=str(1000 / args.chunk_ms))
            self.proc, self.port, self.log = server.popen, server.port, server.log
            probe = f"{self.url}/v1/models"
        kprocs.wait_answering(probe, self.proc, 30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU time used so far by the upstream (the simulator's gunicorn workers included)."""
        return sum(procs.cpu_seconds(pid) for pid in [self.proc.pid, *procs.children(self.proc.pid)])

    def body(self, chunks: int) -> dict:
        words = " ".join(str(i) for i in range(1, chunks + 1))
        return {"model": self.model, "stream": True, "stream_options": {"include_usage": True},
                "max_tokens": 4 * chunks, "messages": [{"role": "user", "content": f"repeat after me: {words}"}]}


def start_gateway(args, workdir: Path, upstream: Upstream) -> procs.Server:
    """The gateway with one route to the upstream and a tier that cannot throttle."""
    routes, tiers = procs.write_gateway_files(workdir, upstream.url, upstream.url, KEY_ENV, "llama-3.3-70b", MODEL)
    table = json.loads(routes.read_text())
    table["routes"][MODEL] = [{"provider": "bench-stream", "model": upstream.model}]
    routes.write_text(json.dumps(table))
    env = procs.gateway_env(workdir, routes, tiers, KEY_ENV, UPSTREAM_KEY, dict(kv.split("=", 1) for kv in args.env))
    procs.flask(ROOT, env, "init-db")
    if args.cpu_profile:
        from bench import cpu_sampler

        args.cpu_profile.mkdir(parents=True, exist_ok=True)
        for old in args.cpu_profile.glob("cpu-*.txt"):
            old.unlink()
        env = dict(env, PYTHONPATH=f"{cpu_sampler.shim_dir(workdir)}{os.pathsep}{ROOT}",
                   **{cpu_sampler.ENV: str(args.cpu_profile)})
    gw = procs.gunicorn("gateway", "app:app", env, workdir, ROOT, args.workers)
    gw.wait_ready("/healthz")
    return gw


def open_account(gw: procs.Server) -> str:
    """Register and buy $1000 of credit (the benchmark tier); the API key."""
    r = requests.post(f"{gw.url}/v1/auth/register", json={"email": EMAIL, "password": "streams-password"}, timeout=30)
    r.raise_for_status()
    procs.flask(ROOT, gw.env, "credits", "add", EMAIL, "1000")
    return r.json()["api_key"]


class MemoryWatch(threading.Thread):
    """Samples the workers' resident memory twice a second; `peak_mb` is the largest sum seen."""

    def __init__(self, server: procs.Server):
        super().__init__(daemon=True)
        self.server, self.peak_mb, self.done = server, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            total = 0
            for pid in self.server.worker_pids():
                try:
                    rss = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                               if ln.startswith("VmRSS:"))
                    total += int(rss.split()[1])
                except (OSError, StopIteration):
                    pass
            self.peak_mb = max(self.peak_mb, total / 1024)


def measure(args) -> dict:
    """Start the upstream and the gateway, run the load (direct first when asked), stop them."""
    import tempfile

    out: dict = {"streams": args.streams, "ramp_s": args.ramp, "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="kyma-streams-") as tmp:
        workdir = Path(tmp)
        upstream = Upstream(args, workdir)
        gw = None
        try:
            out["upstream"] = "peers upstream.py" if upstream.peers else "kyma simulator"
            out["stream_seconds"] = args.chunks * args.chunk_ms / 1000
            body = upstream.body(args.chunks)
            if args.direct:
                out["direct"] = client(f"{upstream.url}/v1/chat/completions", args.streams, args.ramp, body,
                                       f"Bearer {UPSTREAM_KEY}")
            gw = start_gateway(args, workdir, upstream)
            key = open_account(gw)
            watch = MemoryWatch(gw)
            watch.start()
            spies = profilers(gw, args.profile, args.ramp + out["stream_seconds"] + 5) if args.profile else []
            if args.perf:
                spies.append(perf_record(gw, args.perf, args.ramp + out["stream_seconds"] + 5))
            cpu0, up0, load0 = gw.worker_cpu_seconds(), upstream.cpu_seconds(), os.getloadavg()[0]
            each0 = {pid: procs.cpu_seconds(pid) for pid in gw.worker_pids()}
            sys0 = sum(procs.cpu_seconds(p, system=True) for p in gw.worker_pids())
            out["gateway"] = client(f"{gw.url}/v1/chat/completions", args.streams, args.ramp,
                                    dict(body, model=MODEL), f"Bearer {key}")
            g = out["gateway"]
            g["worker_cpu_ms_per_stream"] = round((gw.worker_cpu_seconds() - cpu0) * 1000 / args.streams, 2)
            g["worker_cpu_s_each"] = [round(procs.cpu_seconds(pid) - t, 2) for pid, t in each0.items()]  # balance
            g["worker_system_cpu_ms_per_stream"] = round(
                (sum(procs.cpu_seconds(p, system=True) for p in gw.worker_pids()) - sys0) * 1000 / args.streams, 2)
            g["upstream_cpu_ms_per_stream"] = round(
                (upstream.cpu_seconds() - up0) * 1000 / args.streams, 2)
            g["load_average"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
            for spy in spies:
                spy.wait(timeout=60)
            if args.profile:
                g["profile"] = str(summarize_profiles(args.profile))
            watch.done.set()
            out["gateway"]["workers_peak_rss_mb"] = round(watch.peak_mb, 1)
            if "direct" in out and out["direct"]["ttfc_p50_ms"] and out["gateway"]["ttfc_p50_ms"]:
                for q in ("p50", "p95"):
                    out["gateway"][f"added_ttfc_{q}_ms"] = round(
                        out["gateway"][f"ttfc_{q}_ms"] - out["direct"][f"ttfc_{q}_ms"], 1)
        finally:
            if gw is not None:
                gw.stop()  # the workers write their CPU samples as they exit
            kprocs.stop([kprocs.Server(upstream.proc, upstream.port)])
            if args.cpu_profile and "gateway" in out:
                out["gateway"]["cpu_profile"] = str(summarize_profiles(args.cpu_profile, "cpu-*.txt"))
            if args.keep:
                import shutil

                args.keep.mkdir(parents=True, exist_ok=True)
                for log in workdir.glob("*.log"):
                    shutil.copy(log, args.keep / log.name)
    return out


def profilers(gw: procs.Server, outdir: Path, seconds: float) -> list[subprocess.Popen]:
    """py-spy on every worker for `seconds` (not a project dependency: `.venv/bin/pip install py-spy`)."""
    outdir.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "100", "--nonblocking", "--format", "raw",
                              "--duration", str(int(seconds)), "--output", str(outdir / f"worker-{pid}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            for pid in gw.worker_pids()]


def perf_record(gw: procs.Server, out: Path, seconds: float) -> subprocess.Popen:
    """`perf record` of the workers' on-CPU time (py-spy's samples include time spent preempted, which a
    busy machine inflates at every send that wakes the reader)."""
    pids = ",".join(str(p) for p in gw.worker_pids())
    return subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "499", "-p", pids, "-o", str(out),
                             "--", "sleep", str(int(seconds))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def summarize_profiles(outdir: Path, pattern: str = "worker-*.txt") -> Path:
    """All workers' collapsed stacks in one, summarised by bench/profile.py's summary; its path."""
    from bench.profile import summarize

    merged = outdir / "workers.txt"
    merged.write_text("".join(p.read_text() for p in sorted(outdir.glob(pattern))))
    summary = outdir / "summary.txt"
    summary.write_text(summarize(merged, top=60))
    return summary


def main(argv=None) -> int:
    """Measure, print the JSON, write it to --out; exit 1 when any stream failed."""
    args = parse_args(argv)
    raise_fd_limit(0)  # the servers started here inherit the raised limit
    if args.url:
        result = {"gateway": client(f"{args.url.rstrip('/')}/v1/chat/completions", args.streams, args.ramp,
                                    {"model": args.model, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                                    f"Bearer {os.environ.get('STREAMS_KEY', '')}")}
    elif args.pg:
        from tests.pg import REDIS_URL, create_database, delete_redis_prefix, drop_database, new_redis_prefix

        url, prefix = create_database("streams_"), new_redis_prefix()
        args.env += [f"KYMA_DATABASE_URL={url}", f"KYMA_REDIS_URL={REDIS_URL}", f"KYMA_REDIS_PREFIX={prefix}"]
        try:
            result = measure(args)
        finally:
            drop_database(url)
            delete_redis_prefix(prefix)
        result["database"] = "postgresql + redis"
    else:
        result = measure(args)
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 1 if result["gateway"]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
