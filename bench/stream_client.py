"""Many concurrent SSE streams from one process; prints one JSON line.

    python -m bench.stream_client URL N RAMP_SECONDS < {"body": "...", "auth": "Bearer ..."}

The N streams start evenly over RAMP_SECONDS (0: all at once). The client shares the cores with
what it measures, so it is as light as a real load generator would be: one epoll loop over
non-blocking sockets, no greenlet, timer or name lookup per stream, a prebuilt request, and only
the bytes that can still change the outcome searched on each read. A stream is open from its
response headers to its end; every stream must answer 200 and end with a usage chunk and
`data: [DONE]`, anything else is an error.
"""

from __future__ import annotations

import errno
import json
import re
import resource
import select
import socket
import sys
import time
from urllib.parse import urlsplit

CONTENT = re.compile(rb'"content": ?"[^"]')  # a chunk that carries text (not the role-only lead)
USAGE = re.compile(rb'"usage": ?\{')
READ = 65536
DEADLINE_SECONDS = 300  # the whole run; every stream left after it counts as an error
END = b"\r\n0\r\n\r\n"  # the last chunk of a chunked body


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of values, None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


class State:
    """What the streams report back."""

    def __init__(self) -> None:
        self.open = self.peak = self.ok = 0
        self.errors: list[str] = []
        self.ttfb: list[float] = []
        self.ttfc: list[float] = []
        self.durations: list[float] = []


class Stream:
    """One stream's socket and what has been seen of its answer so far."""

    __slots__ = ("sock", "start", "sent", "head", "opened", "ttfc", "usage", "done", "tail")

    def __init__(self, sock: socket.socket, start: float):
        self.sock, self.start = sock, start
        self.sent = 0  # bytes of the request sent (-1 once all of it went)
        self.head = b""  # the response until its headers are complete
        self.opened = False
        self.ttfc: float | None = None
        self.usage = self.done = False
        self.tail = b""  # the end of the previous read: a marker may straddle two reads

    def feed(self, piece: bytes, now: float) -> bool:
        """Take one read of the body; True when the stream has ended (well or not)."""
        window = self.tail + piece
        if self.ttfc is None and CONTENT.search(window):
            self.ttfc = now - self.start
        if not self.usage:
            self.usage = USAGE.search(window) is not None
        if not self.done:
            self.done = b"data: [DONE]" in window
        if self.done and window.endswith(END):
            return True
        self.tail = window[-32:]
        return False

    def headers(self, piece: bytes, state: State, now: float) -> bool | None:
        """Collect the response head: None while incomplete, else feed()'s answer for what followed it."""
        self.head += piece
        if b"\r\n\r\n" not in self.head:
            if len(self.head) > READ:
                raise ConnectionError("response headers over 64 KiB")
            return None
        head, _, body = self.head.partition(b"\r\n\r\n")
        self.head = b""
        if not head.startswith(b"HTTP/1.1 200"):
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            raise ConnectionError(f"{status}: {body[:160]!r}")
        state.ttfb.append(now - self.start)
        self.opened = True
        state.open += 1
        state.peak = max(state.peak, state.open)
        return self.feed(body, now)


def raise_fd_limit(n: int) -> int:
    """This client needs one descriptor per stream: raise the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < n + 64:
        raise SystemExit(f"stream client: open-file limit {soft} is below {n + 64}; raise it (ulimit -n)")
    return soft


class Loop:
    """The epoll loop that starts the streams on time and reads every one of them to its end."""

    def __init__(self, address: tuple[str, int], request: bytes, state: State):
        self.address, self.request, self.state = address, request, state
        self.poll = select.epoll()
        self.streams: dict[int, Stream] = {}
        self.ended = 0

    def start(self) -> None:
        """Begin one stream: a non-blocking connect, finished when the socket turns writable."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = Stream(sock, time.perf_counter())
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            self.fail(stream, f"ConnectionError: connect: {errno.errorcode.get(code, code)}")
            return
        self.streams[sock.fileno()] = stream
        self.poll.register(sock.fileno(), select.EPOLLOUT)

    def event(self, fd: int, mask: int, now: float) -> None:
        stream = self.streams.get(fd)
        if stream is None:
            return
        try:
            if stream.sent >= 0:
                self.send(stream, fd)
                return
            piece = stream.sock.recv(READ)
            if not piece:
                raise ConnectionError("closed before the end of the stream" if stream.opened
                                      else "closed before the response headers")
            ended = stream.feed(piece, now) if stream.opened else stream.headers(piece, self.state, now)
            if ended:
                self.finish(stream)
        except BlockingIOError:
            pass
        except Exception as exc:  # noqa: BLE001 — every failure is counted and reported, none hidden
            self.fail(stream, f"{type(exc).__name__}: {exc}"[:200])

    def send(self, stream: Stream, fd: int) -> None:
        err = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise ConnectionError(f"connect: {errno.errorcode.get(err, err)}")
        stream.sent += stream.sock.send(self.request[stream.sent:])
        if stream.sent == len(self.request):
            stream.sent = -1
            self.poll.modify(fd, select.EPOLLIN)

    def finish(self, stream: Stream) -> None:
        now = time.perf_counter()
        if not (stream.usage and stream.done):
            self.fail(stream, "stream ended without usage or [DONE]")
            return
        self.state.ok += 1
        self.state.ttfc.append(stream.ttfc if stream.ttfc is not None else now - stream.start)
        self.state.durations.append(now - stream.start)
        self.close(stream)

    def fail(self, stream: Stream, why: str) -> None:
        self.state.errors.append(why)
        self.close(stream)

    def close(self, stream: Stream) -> None:
        if stream.opened:
            self.state.open -= 1
            stream.opened = False
        fd = stream.sock.fileno()
        if self.streams.pop(fd, None) is not None:
            self.poll.unregister(fd)
        stream.sock.close()
        self.ended += 1

    def run(self, n: int, ramp: float) -> int:
        """Start n streams evenly over `ramp` seconds and serve them until all end (or the deadline); the
        number left unfinished."""
        started = time.perf_counter()
        deadline = started + DEADLINE_SECONDS
        due = 0  # the next stream to start
        while self.ended < n:
            now = time.perf_counter()
            if now >= deadline:
                break
            while due < n and started + ramp * due / n <= now:
                self.start()
                due += 1
            wait = (started + ramp * due / n - now) if due < n else deadline - now
            for fd, mask in self.poll.poll(max(0.0, min(wait, deadline - now)), 1024):
                self.event(fd, mask, time.perf_counter())
        left = len(self.streams)
        for stream in list(self.streams.values()):
            self.close(stream)
        return left


def run(url: str, n: int, ramp: float, body: bytes, auth: str) -> dict:
    """Run the load and summarise it."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
             "Accept: text/event-stream", f"Content-Length: {len(body)}", "Connection: close"]
    if auth:
        lines.append(f"Authorization: {auth}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    state = State()
    address = (socket.gethostbyname(parts.hostname), parts.port or 80)  # once, not per stream
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    unfinished = Loop(address, request, state).run(n, ramp)
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
    url, n, ramp = argv[0], int(argv[1]), float(argv[2]) if len(argv) > 2 else 0.0
    raise_fd_limit(n)
    params = json.loads(sys.stdin.read())
    print(json.dumps(run(url, n, ramp, params["body"].encode(), params.get("auth", ""))))


if __name__ == "__main__":
    main(sys.argv[1:])
