"""Upstream HTTP/1.1: keep-alive socket pools per origin and geventhttpclient's C (llhttp) parser.

It replaced urllib3, measured side by side (docs/benchmarks.md): most of urllib3's cost was
http.client's Python header handling. It reaches into geventhttpclient where no public API offers
what it needs: the parser's decoded-body buffer and the response's socket (so a read can time out
and be resumed, which neither geventhttpclient's read() nor urllib3 can), the pool's liveness
check (replaced by a poll(2) that never yields), and the pool's address lookup and the host it
looks up (kept for a while instead of asked on every connect); and into a gevent socket's real
socket and read watcher, for a timed read without a Timeout object per wait (recv).
requirements.txt pins both exactly, and tests/test_upstream_http_internals.py fails when any of
them changes. The request head is assembled from strings we control,
and every header value is checked for line breaks, so nothing can smuggle a header upstream.
Every wait takes a timeout and can be resumed after it (Pending.wait, Response.pieces with
ticks), so one greenlet can relay a stream and still keep its own clock.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import time
import weakref
from enum import StrEnum
from typing import Callable, Iterator
from urllib.parse import SplitResult, urlsplit

from gevent import socket as gsocket
from gevent.hub import Waiter
from gevent.monkey import get_original
from geventhttpclient.connectionpool import ConnectionPool, SSLConnectionPool
from geventhttpclient.response import HTTPParseError, HTTPSocketPoolResponse

from kyma.providers.egress import Proxy

READ_BLOCK = 65536
MAX_HEAD_BYTES = 65536
SEND_SECONDS = 30.0  # the longest an upstream may take to accept the whole request
RESOLVE_SECONDS = 30.0  # an upstream host's addresses are looked up again after this
_TIMED_OUT = object()


class Phase(StrEnum):
    """Where a call failed to get a usable HTTP answer."""

    CONNECT = "connect"  # no connection (refused, DNS, TLS, a proxy that would not tunnel)
    TIMEOUT = "timeout"  # the upstream stayed silent too long
    BROKEN = "broken"  # the connection failed or closed mid-exchange
    PROTOCOL = "protocol"  # what came back (or what we were asked to send) is not HTTP


class HTTPFailure(Exception):
    """A call that got no usable HTTP answer; `phase` says where."""

    def __init__(self, phase: Phase, detail: str):
        super().__init__(detail)
        self.phase = Phase(phase)
        self.detail = detail


class Response(HTTPSocketPoolResponse):
    """An answer whose status line and headers have arrived; the body is read on demand."""

    def __init__(self, sock, pool, head: bytes):
        super().__init__(sock, pool, method="POST", block_size=READ_BLOCK, pre_buffered=head)

    @property
    def status(self) -> int:
        return self.get_code()

    def header(self, name: str) -> str:
        """A header's value ('' when absent; the first one when repeated)."""
        value = self.get(name)
        if isinstance(value, list):
            return value[0] if value else ""
        return value or ""

    def pieces(self, timeout: float | Callable[[], float], ticks: bool = False,
               within: float | None = None) -> Iterator[bytes]:
        """The body as it arrives, piece by piece, until the message ends.

        `timeout` is the longest silence allowed (a number, or a function asked before each wait).
        When it passes, a ticking reader yields b"" and goes on waiting (the caller decides whether
        that silence is too long); otherwise HTTPFailure(Phase.TIMEOUT) is raised. `within` bounds the
        whole body: past it HTTPFailure(Phase.TIMEOUT) is raised even while bytes keep coming. A
        connection that ends before the message does raises HTTPFailure(Phase.BROKEN).
        """
        buf = self._body_buffer  # the parser's own buffer: bytes it has decoded (de-chunked) so far
        wait = timeout if callable(timeout) else lambda: timeout
        end = None if within is None else time.monotonic() + within
        while True:
            if buf:
                data = bytes(buf)
                del buf[:]
                yield data
            if self.message_complete:
                return
            sock = self._sock
            if sock is None:
                raise HTTPFailure(Phase.BROKEN, "upstream connection closed before the body ended")
            silence = wait()
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    self.release()
                    raise HTTPFailure(Phase.TIMEOUT, f"upstream took over {within} s to send the body")
                silence = min(silence, left)
            try:
                data = recv(sock, max(0.001, silence))
            except socket.timeout as exc:
                if ticks:
                    yield b""
                    continue
                self.release()
                raise HTTPFailure(Phase.TIMEOUT, "upstream sent nothing within the read timeout") from exc
            except OSError as exc:
                self.release()
                raise HTTPFailure(Phase.BROKEN, f"upstream connection broke mid-body ({type(exc).__name__})") from exc
            except BaseException:
                self.release()  # a gevent.Timeout or a killed greenlet: the half-read connection goes
                raise
            try:
                self.feed(data)  # b"" (the peer closed) ends a close-delimited body or fails the message
            except HTTPParseError as exc:
                self.release()
                raise HTTPFailure(Phase.BROKEN, f"upstream connection broke mid-body ({exc})") from exc

    def close(self) -> None:
        """Done with it: a fully read connection goes back to the pool, any other is closed."""
        self.release()


_poll = get_original("select", "poll")  # the real poll(2): asking it never yields to the event loop
_WAITED_OUT = object()


def recv(sock, timeout: float) -> bytes:
    """sock.recv(READ_BLOCK) within `timeout` seconds (socket.timeout after them), for a relay's reads.

    gevent's own timed read builds a Timeout (a Python exception object with its timer) for every
    wait; a stream waits once per chunk, so this one waits on the socket's read watcher and a bare
    loop timer instead (the CPU it saves: docs/benchmarks.md). TLS sockets keep gevent's read.
    """
    if type(sock) is not gsocket.socket:
        sock.settimeout(timeout)
        return sock.recv(READ_BLOCK)
    raw = sock._sock  # the real socket, non-blocking under gevent
    while True:
        try:
            return raw.recv(READ_BLOCK)
        except BlockingIOError:
            pass
        hub = sock.hub
        waiter, watcher, timer = Waiter(hub), sock._read_event, hub.loop.timer(timeout)
        watcher.start(waiter.switch, None)
        timer.start(waiter.switch, _WAITED_OUT)
        try:
            waited_out = waiter.get() is _WAITED_OUT
        finally:
            watcher.stop()
            timer.close()
        if waited_out:
            try:  # bytes that came while this worker was busy elsewhere are not silence
                return raw.recv(READ_BLOCK)
            except BlockingIOError:
                raise socket.timeout("timed out") from None


class _Tuned:
    """What the pools do differently from geventhttpclient's defaults."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._unused = weakref.WeakSet()  # connections opened and not yet handed out
        self._addresses: tuple[float, list] | None = None  # (resolved at, getaddrinfo's answer)
        self._literal = _is_ip(self._connection_host)

    def _resolve(self):
        """getaddrinfo's answer, kept for RESOLVE_SECONDS (for good when the host is an IP address).

        Each lookup is a hop through gevent's thread pool: when thousands of streams open at once,
        every one of them needs a new connection, and the hops cost more than the connects.
        """
        now = time.monotonic()
        if self._addresses is not None and (self._literal or now - self._addresses[0] < RESOLVE_SECONDS):
            return self._addresses[1]
        found = super()._resolve()
        self._addresses = (now, found)
        return found

    def after_connect(self, sock) -> None:
        """No Nagle delay: a request longer than one TCP segment would otherwise hold its last
        segment back until the first is acknowledged (a round trip, or a delayed-ACK timeout)."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._unused.add(sock)

    def first_use(self, sock) -> bool:
        """True when `sock` was just opened, not taken from the pool (asked once per hand-out)."""
        if sock in self._unused:
            self._unused.discard(sock)
            return True
        return False

    def _is_socket_alive(self, sock) -> bool:
        """Idle and open: nothing to read (neither the upstream's FIN nor stray bytes).

        geventhttpclient asks gevent's select(), which with a zero timeout still yields to the
        event loop (a full loop turn on every request) and cannot take descriptors above 1023.
        """
        try:
            fd = sock.fileno()
            if fd < 0:
                return False
            poller = _poll()
            poller.register(fd, select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class _Pool(_Tuned, ConnectionPool):
    """Plain-HTTP connections."""


class _TLSPool(_Tuned, SSLConnectionPool):
    """TLS connections, verified against the system's CAs (or a given bundle)."""


def parse_base_url(base_url: str) -> SplitResult:
    """The parts of an upstream base URL; ValueError unless it is http(s) with a host."""
    url = urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"not an http(s) base URL with a host: {base_url!r}")
    return url


class Origin:
    """One upstream scheme://host:port: a pool of keep-alive connections (TLS for https).

    With a proxy, the pool's connections go to the proxy: an https upstream is reached through a
    CONNECT tunnel (TLS, verified against the upstream's name, runs inside it), a plain one by
    sending the proxy absolute-form requests.
    """

    def __init__(self, base_url: str, *, size: int, connect_timeout: float, ca_certs: str | None = None,
                 proxy: Proxy | None = None):
        url = parse_base_url(base_url)
        https = url.scheme == "https"
        port = url.port or (443 if https else 80)
        host = url.hostname
        via = (proxy.host, proxy.port) if proxy else (host, port)
        # No network_timeout: every read and send sets its own (Pending.send, Pending.wait, pieces).
        kw = dict(size=size, connection_timeout=connect_timeout)
        if https:
            if proxy:
                kw.update(use_proxy=True, proxy_user=proxy.user, proxy_password=proxy.password)
            self.pool = _TLSPool(*via, host, port, ssl_options={"ca_certs": ca_certs} if ca_certs else None, **kw)
        else:
            self.pool = _Pool(*via, host, port, **kw)
        host_header = url.netloc.rpartition("@")[2]  # never send userinfo
        self.path_prefix = url.path.rstrip("/")
        self._head_start = f"\r\nHost: {host_header}\r\nUser-Agent: kyma-gateway\r\n"
        if proxy and not https:  # a forwarding proxy takes the absolute URL, and its credentials per request
            self.path_prefix = f"http://{host_header}{self.path_prefix}"
            if proxy.authorization:
                self._head_start += f"Proxy-Authorization: {proxy.authorization}\r\n"

    def post(self, path: str, body: bytes, headers: dict[str, str], first_byte_timeout: float) -> Response:
        """Send a POST and wait for the answer's headers (HTTPFailure "timeout" after first_byte_timeout)."""
        pending = self.start(path, body, headers)
        resp = pending.wait(first_byte_timeout)
        if resp is None:
            pending.close()
            raise HTTPFailure(Phase.TIMEOUT, "upstream sent no response before the first-byte timeout")
        return resp

    def start(self, path: str, body: bytes, headers: dict[str, str]) -> "Pending":
        """Connect (or reuse a pooled connection) and send a POST; the answer is awaited on the result."""
        pending = Pending(self, self._head(path, headers, len(body)) + body)
        pending.send()
        return pending

    def connect(self):
        """A pooled connection, or a new one (HTTPFailure "connect" when that fails)."""
        try:
            return self.pool.get_socket()
        except socket.timeout as exc:
            raise HTTPFailure(Phase.CONNECT, "upstream connect timeout") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake or certificate
            raise HTTPFailure(Phase.CONNECT, f"upstream connection failed ({type(exc).__name__})") from exc
        except RuntimeError as exc:  # geventhttpclient's word for a proxy that refused the CONNECT tunnel
            raise HTTPFailure(Phase.CONNECT, f"upstream proxy: {str(exc)[:200]}") from exc

    def _head(self, path: str, headers: dict[str, str], length: int) -> bytes:
        lines = [f"POST {self.path_prefix}{path} HTTP/1.1", self._head_start, f"Content-Length: {length}\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise HTTPFailure(Phase.PROTOCOL, f"refused to send header {name!r}: it holds a line break")
            if ":" in name:
                raise HTTPFailure(Phase.PROTOCOL, f"refused to send header {name!r}: a name cannot hold a colon")
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1", "replace")


class Pending:
    """A sent request whose answer has not arrived yet; wait() can be called again after a timeout.

    A reused keep-alive connection that ends before any answer byte (not even a 1xx) was most
    likely closed by the upstream while idle: the request is sent once more on a fresh connection.
    An upstream that read the request and then dropped the connection looks the same, so the
    resend can, rarely, run it twice. A connection opened for this request that ends so is a
    failure, never resent: the router decides what next.
    """

    def __init__(self, origin: Origin, request: bytes):
        self.origin = origin
        self.request = request
        self.sock = None
        self.reused = False
        self.received = b""
        self.answered = False  # any byte arrived (a 1xx included): the upstream has the request
        self.retried = False

    def send(self) -> None:
        """Send the request on a pooled (or new) connection."""
        self.sock = self.origin.connect()
        self.reused = not self.origin.pool.first_use(self.sock)
        self.sock.settimeout(SEND_SECONDS)  # a pooled socket keeps whatever its last read set
        if self._guarded(self.sock.sendall, self.request) is _TIMED_OUT:
            self.close()
            raise HTTPFailure(Phase.BROKEN, "upstream did not take the request in time")

    def _guarded(self, op, arg):
        """op(arg) on the connection: its result, _TIMED_OUT, or None after a resend on a fresh one.

        A reset or broken pipe on a reused connection is the stale keep-alive case (resent once);
        any other error drops the connection.
        """
        try:
            return op(arg)
        except socket.timeout:
            return _TIMED_OUT
        except (ConnectionResetError, BrokenPipeError) as exc:
            self._retry(exc)
            return None
        except OSError as exc:
            self.close()
            raise HTTPFailure(Phase.BROKEN, f"upstream connection failed ({type(exc).__name__})") from exc
        except BaseException:
            self.close()
            raise

    def _retry(self, exc: Exception) -> None:
        self.close()
        if self.retried or self.answered or not self.reused:
            raise HTTPFailure(Phase.BROKEN, f"upstream closed the connection ({type(exc).__name__})") from exc
        self.retried = True
        self.send()

    def wait(self, timeout: float) -> Response | None:
        """The answer once its headers are in, or None if `timeout` passed first (the call stays open)."""
        deadline = time.monotonic() + timeout
        while True:
            end = self.received.find(b"\r\n\r\n")
            if end >= 0 and not self.received.startswith(b"HTTP/1.1 1"):  # a 1xx is followed by the answer
                sock, self.sock = self.sock, None
                try:
                    return Response(sock, self.origin.pool, self.received)
                except HTTPParseError as exc:  # the Response gave the connection back already
                    raise HTTPFailure(Phase.PROTOCOL, "upstream sent something that is not HTTP") from exc
            if end >= 0:
                self.received = self.received[end + 4:]
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self._guarded(lambda sock: recv(sock, left), self.sock)
            if data is _TIMED_OUT:
                return None
            if data is None:
                continue  # resent on a fresh connection
            if not data:
                self._retry(ConnectionResetError("closed before answering"))
                continue
            self.received += data
            self.answered = True
            if len(self.received) > MAX_HEAD_BYTES:
                self.close()
                raise HTTPFailure(Phase.PROTOCOL, "upstream response headers over 64 KiB")

    def close(self) -> None:
        """Drop the connection (an unanswered request leaves it in an unknown state)."""
        if self.sock is not None:
            sock, self.sock = self.sock, None
            self.origin.pool.release_socket(sock)
