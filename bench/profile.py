"""Profile the gateway worker under load: `python -m bench.profile [--seconds 15]`.

Starts the same servers as bench/run.py, drives non-streamed requests with wrk at 32
connections, and samples the gateway worker with py-spy (install it into the venv yourself:
`.venv/bin/pip install py-spy`; it is not a project dependency). Prints the functions with the
most samples, inclusive and self, and writes the collapsed stacks to bench/results/.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from bench import procs
from bench.load import run_wrk
from bench.run import RESULTS, bodies, open_account, parse_args, start_servers

ROOT = Path(__file__).resolve().parent.parent


def summarize(collapsed: Path, top: int = 40) -> str:
    """Inclusive and self sample shares per frame from py-spy's collapsed ("raw") output."""
    inclusive, own, total = Counter(), Counter(), 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{total} samples", "", "inclusive %  function (file:line)"]
    out += [f"{100 * c / total:10.1f}  {f}" for f, c in inclusive.most_common(top)]
    out += ["", "self %       function (file:line)"]
    out += [f"{100 * c / total:10.1f}  {f}" for f, c in own.most_common(top)]
    return "\n".join(out)


def main(argv=None) -> int:
    """Start servers, load the gateway, sample its worker, print the summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--stream", action="store_true", help="profile streamed requests instead")
    own, rest = p.parse_known_args(argv)
    args = parse_args(rest)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = RESULTS / "profile-work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    servers: dict[str, procs.Server] = {}
    out = RESULTS / ("profile-stream.txt" if own.stream else "profile.txt")
    try:
        servers = start_servers(args, workdir)
        key = open_account(servers["gateway"], args.gateway_root)
        b = bodies()
        gw = servers["gateway"]
        worker = gw.worker_pids()[0]
        body = b["gw_stream"] if own.stream else b["gw_plain"]
        run_wrk("gateway", gw, f"{gw.url}/v1/chat/completions", body, f"Bearer {key}", own.connections, 3)  # warm-up
        spy = subprocess.Popen([pyspy, "record", "-p", str(worker), "-d", str(own.seconds), "-r", str(own.rate),
                                "-f", "raw", "-o", str(out), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        result = {}
        load = threading.Thread(target=lambda: result.update(res=run_wrk(
            "gateway", gw, f"{gw.url}/v1/chat/completions", body, f"Bearer {key}", own.connections, own.seconds)))
        load.start()
        load.join()
        spy.wait(own.seconds + 30)
        res = result["res"]
        print(f"load: {res.rps:.0f} req/s, CPU {res.cpu_ms_per_request:.2f} ms/request, "
              f"errors {res.errors + res.non_2xx}")
    finally:
        for s in reversed(list(servers.values())):
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(summarize(out))
    print(f"collapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
