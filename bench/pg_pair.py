"""Two gateway instances on one PostgreSQL + Redis behind nginx, as docs/deploy.md describes.

    python bench/pg_pair.py PEERS WORK NGINX_PORT PORT_A PORT_B WORKERS > target.json

For the peer harness (bench/peers.sh, PG_PAIR=1): starts both instances with the harness's
kyma_target.sh (TARGET_DATABASE_URL, TARGET_REDIS_URL and KYMA_REDIS_PREFIX come from the
environment), then nginx as an unprivileged foreground process with its own configuration in
WORK/kyma-pair, on 127.0.0.1 only; prints one compare.py target (nginx's URL, the first
instance's key) and stays up until SIGTERM, then stops nginx and both instances by PID.

This process is a child subreaper: the instances' launchers (which kyma_target.sh leaves
running) become its children, so the target's CPU (its descendants') counts both instances
and nginx.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36

NGINX_CONF = """\
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 8192; }}  # two per proxied stream; within the open-file limit
http {{
    access_log off;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    upstream kyma {{
        server 127.0.0.1:{a} max_fails=3 fail_timeout=10s;
        server 127.0.0.1:{b} max_fails=3 fail_timeout=10s;
        keepalive 64;
        keepalive_timeout 1s;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 32m;
        location / {{
            proxy_pass http://kyma;
            proxy_http_version 1.1;
            proxy_set_header Host              $host;
            proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Connection        "";
            proxy_buffering off;
            proxy_cache off;
            gzip off;
            proxy_connect_timeout 5s;
            proxy_send_timeout    300s;
            proxy_read_timeout    300s;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 2;
        }}
    }}
}}
"""


def start_instance(peers: Path, work: Path, port: int, workers: int, name: str) -> tuple[dict, int]:
    """One instance through kyma_target.sh: its target and its launcher's PID (a process group)."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, KYMA_TRUSTED_PROXIES="1")  # nginx in front, as deployed
    out = subprocess.run([str(peers / "kyma_target.sh"), str(root), str(work), str(port), str(workers), name],
                         env=env, capture_output=True, text=True, timeout=300)
    pid_file = work / name / "pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else 0
    if out.returncode != 0:
        raise RuntimeError(f"{name} did not start: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)[0], pid


def stop_group(pid: int) -> None:
    """SIGTERM a process group, SIGKILL it if it lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str]) -> int:
    """Start the pair and nginx, print the target, wait for SIGTERM, stop everything."""
    peers, work = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    port, a, b, workers = (int(x) for x in argv[2:6])
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    groups: list[int] = []
    nginx = None
    here = work / "kyma-pair"
    here.mkdir(parents=True, exist_ok=True)
    try:
        first, pid = start_instance(peers, work, a, workers, "kyma-pair-a")
        groups.append(pid)
        _, pid = start_instance(peers, work, b, workers, "kyma-pair-b")
        groups.append(pid)
        conf = here / "nginx.conf"
        conf.write_text(NGINX_CONF.format(work=here, a=a, b=b, port=port))
        nginx = subprocess.Popen(["nginx", "-p", str(here), "-c", str(conf), "-g", "daemon off;"],
                                 stdout=(here / "nginx.out").open("wb"), stderr=subprocess.STDOUT)
        for _ in range(50):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
                break
            except OSError:
                if nginx.poll() is not None:
                    raise RuntimeError(f"nginx exited: {(here / 'nginx.out').read_text()[-500:]}")
                time.sleep(0.2)
        target = dict(first, name=f"kyma-pg-pair-w{workers}", base_url=f"http://127.0.0.1:{port}/v1",
                      cpu_pid=os.getpid())
        print(json.dumps([target]), flush=True)
        while not stopping:
            time.sleep(0.5)
            try:
                os.waitpid(-1, os.WNOHANG)  # orphans reparented here are reaped
            except ChildProcessError:
                pass
        return 0
    except Exception as exc:  # noqa: BLE001 — reported on stderr; the driver fails without the target
        print(f"pg_pair: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if nginx is not None and nginx.poll() is None:
            nginx.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
        for pid in groups:
            stop_group(pid)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
