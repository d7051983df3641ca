"""Many concurrent SSE streams from one gevent process; prints one JSON line.

    python -m bench.stream_client URL N RAMP_SECONDS < {"body": "...", "auth": "Bearer ..."}

Run as its own process (it monkey-patches); the benchmark parent never patches itself. The N
streams start evenly over RAMP_SECONDS (0: all at once). Raw sockets and a prebuilt request keep
the client's own cost per stream small, so that thousands of streams measure the server, not us.
A stream is open from its response headers to its end; every stream must answer 200 and end
with a usage chunk and `data: [DONE]`, anything else is an error.
"""

from __future__ import annotations

import json
import re
import resource
import sys
import time
from urllib.parse import urlsplit

CONTENT = re.compile(rb'"content": ?"[^"]')  # a chunk that carries text (not the role-only lead)
USAGE = re.compile(rb'"usage": ?\{')
READ = 65536
DEADLINE_SECONDS = 300  # the whole run; every stream left after it counts as an error


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of values, None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


class State:
    """What the streams report back, shared by every greenlet (no locks: greenlets never preempt)."""

    def __init__(self) -> None:
        self.open = self.peak = self.ok = 0
        self.errors: list[str] = []
        self.ttfb: list[float] = []
        self.ttfc: list[float] = []
        self.durations: list[float] = []


def one(host: str, port: int, request: bytes, state: State) -> None:
    """One stream: connect, send, read to the end; its timings go to `state`."""
    import socket

    start = time.perf_counter()
    sock = socket.create_connection((host, port), timeout=120)
    opened = False
    try:
        sock.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            piece = sock.recv(READ)
            if not piece:
                raise ConnectionError("closed before the response headers")
            buf += piece
        head, _, body = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            state.errors.append(f"{status}: {body[:160]!r}")
            return
        state.ttfb.append(time.perf_counter() - start)
        opened = True
        state.open += 1
        state.peak = max(state.peak, state.open)
        ttfc, usage, done, tail = None, False, False, b""
        piece = body
        while True:
            window = tail + piece
            if ttfc is None and CONTENT.search(window):
                ttfc = time.perf_counter() - start
            usage = usage or bool(USAGE.search(window))
            done = done or b"data: [DONE]" in window
            if done and window.endswith(b"\r\n0\r\n\r\n"):
                break  # the last chunk of a chunked body
            tail = window[-32:]
            piece = sock.recv(READ)
            if not piece:
                break
        if not (usage and done):
            state.errors.append("stream ended without usage or [DONE]")
            return
        state.ok += 1
        state.ttfc.append(ttfc if ttfc is not None else time.perf_counter() - start)
        state.durations.append(time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 — every failure is counted and reported, none hidden
        state.errors.append(f"{type(exc).__name__}: {exc}"[:200])
    finally:
        if opened:
            state.open -= 1
        sock.close()


def raise_fd_limit(n: int) -> int:
    """This client needs one descriptor per stream: raise the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < n + 64:
        raise SystemExit(f"stream client: open-file limit {soft} is below {n + 64}; raise it (ulimit -n)")
    return soft


def run(url: str, n: int, ramp: float, body: bytes, auth: str) -> dict:
    """Start n streams evenly over `ramp` seconds and wait for all of them (bounded by DEADLINE_SECONDS)."""
    import gevent

    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
             "Accept: text/event-stream", f"Content-Length: {len(body)}", "Connection: close"]
    if auth:
        lines.append(f"Authorization: {auth}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    state = State()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    jobs = [gevent.spawn_later(ramp * i / n, one, parts.hostname, parts.port or 80, request, state)
            for i in range(n)]
    gevent.joinall(jobs, timeout=DEADLINE_SECONDS)
    unfinished = sum(1 for j in jobs if not j.ready())
    gevent.killall(jobs, block=False)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    return {
        "streams": n, "ramp_s": ramp, "ok": state.ok, "errors": len(state.errors) + unfinished,
        "error_samples": sorted(set(state.errors))[:5], "unfinished": unfinished,
        "peak_open": state.peak, "wall_s": round(time.perf_counter() - started, 2),
        "ttfb_p50_ms": ms(percentile(state.ttfb, 50)), "ttfb_p95_ms": ms(percentile(state.ttfb, 95)),
        "ttfc_p50_ms": ms(percentile(state.ttfc, 50)), "ttfc_p90_ms": ms(percentile(state.ttfc, 90)),
        "ttfc_p95_ms": ms(percentile(state.ttfc, 95)),
        "ttfc_p99_ms": ms(percentile(state.ttfc, 99)), "ttfc_max_ms": ms(max(state.ttfc, default=None)),
        "duration_max_s": round(max(state.durations), 2) if state.durations else None,
        # The client shares the cores with what it measures: its own cost must stay small beside theirs.
        "client_cpu_ms_per_stream": round((usage.ru_utime + usage.ru_stime - cpu0.ru_utime - cpu0.ru_stime)
                                          * 1000 / n, 2),
    }


def main(argv: list[str]) -> None:
    """Entry point: URL N RAMP, with the body and the Authorization value read from stdin as JSON."""
    from gevent import monkey

    monkey.patch_all()
    url, n, ramp = argv[0], int(argv[1]), float(argv[2]) if len(argv) > 2 else 0.0
    raise_fd_limit(n)
    params = json.loads(sys.stdin.read())
    print(json.dumps(run(url, n, ramp, params["body"].encode(), params.get("auth", ""))))


if __name__ == "__main__":
    main(sys.argv[1:])
