"""The upstream HTTP client against scripted raw-socket servers: reuse, retries, framing, timeouts, TLS."""

from __future__ import annotations

import select
import shutil
import socket
import ssl
import subprocess
import threading
import time

import gevent
import pytest

from kyma.providers.http import HTTPFailure, Origin

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _read_request(conn) -> bytes:
    """One request (head and Content-Length body) from a connection; b'' when it closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return b""
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


class Scripted:
    """A 127.0.0.1 server that runs `script(conn, number)` on each connection it accepts."""

    def __init__(self, script, tls: ssl.SSLContext | None = None):
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.tls:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    conn.close()
                    continue
            threading.Thread(target=self._run, args=(conn, self.connections), daemon=True).start()

    def _run(self, conn, number):
        try:
            self.script(self, conn, number)
        except OSError:
            pass  # the client dropped the connection (some tests do on purpose): this one is done
        finally:
            conn.close()

    def read(self, conn) -> bytes:
        request = _read_request(conn)
        if request:
            self.requests.append(request)
        return request

    def close(self):
        self.sock.close()


@pytest.fixture()
def serve():
    servers = []

    def start(script, tls=None) -> Scripted:
        servers.append(Scripted(script, tls))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _origin(server: Scripted, scheme="http", **kw) -> Origin:
    return Origin(f"{scheme}://127.0.0.1:{server.port}/v1", size=4, connect_timeout=2, **kw)


def _keep_answering(server, conn, number):
    while server.read(conn):
        conn.sendall(OK)


def test_a_keep_alive_connection_is_reused_and_the_request_is_framed(serve):
    server = serve(_keep_answering)
    origin = _origin(server)
    for _ in range(3):
        resp = origin.post("/chat/completions", b'{"a":1}', {"Authorization": "Bearer k"}, 2)
        assert resp.status == 200 and b"".join(resp.pieces(2)) == b"{}"
        resp.close()
    assert server.connections == 1
    head = server.requests[0].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head and "Content-Length: 7\r\n" in head
    assert "Authorization: Bearer k\r\n" in head and head.endswith('\r\n\r\n{"a":1}')


def test_a_pooled_connection_closed_as_it_is_reused_is_retried_once_on_a_fresh_one(serve):
    def script(server, conn, number):
        server.read(conn)
        if number == 1:
            conn.sendall(OK)
            server.read(conn)  # the second request arrives on the kept-alive connection: close unanswered
            return
        conn.sendall(OK)

    server = serve(script)
    origin = _origin(server)
    for _ in range(2):
        resp = origin.post("/chat/completions", b"{}", {}, 2)
        assert resp.status == 200
        resp.close()
    assert server.connections == 2 and len(server.requests) == 3


def test_a_pooled_connection_the_upstream_closed_while_idle_is_not_reused(serve):
    def script(server, conn, number):
        server.read(conn)
        conn.sendall(OK)  # and the connection closes: keep-alive ended by the upstream

    server = serve(script)
    origin = _origin(server)
    first = origin.post("/chat/completions", b"{}", {}, 2)
    assert b"".join(first.pieces(2)) == b"{}"
    idle = origin.pool._socket_queue.peek(block=False)  # the pooled connection, before anyone reuses it
    assert select.select([idle.fileno()], [], [], 10)[0], "the upstream's FIN never arrived"
    pending = origin.start("/chat/completions", b"{}", {})
    resp = pending.wait(2)
    assert resp.status == 200 and not pending.retried  # the dead one was seen before sending, not after
    assert server.connections == 2


def test_upstream_connections_send_without_nagle_delay(serve):
    pending = _origin(serve(_keep_answering)).start("/chat/completions", b"{}", {})
    assert pending.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    pending.close()


def test_a_new_connection_closed_before_answering_is_a_failure_never_resent(serve):
    # The upstream may have started on a request it read: only a stale pooled connection is resent.
    server = serve(lambda server, conn, number: server.read(conn))
    with pytest.raises(HTTPFailure) as info:
        _origin(server).post("/chat/completions", b"{}", {}, 2)
    assert info.value.phase == "broken"
    assert server.connections == 1 and len(server.requests) == 1


def _second_call_breaks(server: Scripted) -> Scripted:
    """One answered call, then a second that must fail as a broken connection."""
    origin = _origin(server)
    origin.post("/chat/completions", b"{}", {}, 2).close()
    with pytest.raises(HTTPFailure) as info:
        origin.post("/chat/completions", b"{}", {}, 2)
    assert info.value.phase == "broken"
    return server


def test_a_reused_connection_that_closes_then_a_new_one_that_does_fails_after_one_retry(serve):
    def script(server, conn, number):
        server.read(conn)
        if number == 1:
            conn.sendall(OK)
            server.read(conn)  # closes the kept-alive connection unanswered; so does every later one

    server = _second_call_breaks(serve(script))
    assert server.connections == 2 and len(server.requests) == 3


def test_a_reused_connection_closed_after_an_interim_1xx_is_not_resent(serve):
    # A 1xx means the upstream has the request: sending it again could run it twice.
    def script(server, conn, number):
        server.read(conn)
        conn.sendall(OK)
        if server.read(conn):
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")

    server = _second_call_breaks(serve(script))
    assert server.connections == 1 and len(server.requests) == 2


def test_a_header_with_a_line_break_is_never_sent(serve):
    server = serve(_keep_answering)
    with pytest.raises(HTTPFailure) as info:
        _origin(server).post("/chat/completions", b"{}", {"X-Sim-Fault": "500\r\nX-Injected: 1"}, 2)
    assert info.value.phase == "protocol" and server.connections == 0


def test_body_pieces_arrive_as_they_are_sent_and_a_cut_chunked_body_is_broken(serve):
    release = threading.Event()

    def script(server, conn, number):
        server.read(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"7\r\ndata: 1\r\n")
        release.wait(5)
        conn.sendall(b"7\r\ndata: 2\r\n")  # then the connection closes without the last chunk

    resp = _origin(serve(script)).post("/chat/completions", b"{}", {}, 2)
    pieces = resp.pieces(2)
    assert next(pieces) == b"data: 1"  # before the server sent anything more
    release.set()
    assert next(pieces) == b"data: 2"
    with pytest.raises(HTTPFailure) as info:
        next(pieces)
    assert info.value.phase == "broken"


def test_a_close_delimited_body_ends_when_the_connection_does(serve):
    def script(server, conn, number):
        server.read(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello ")
        conn.sendall(b"world")

    resp = _origin(serve(script)).post("/chat/completions", b"{}", {}, 2)
    assert b"".join(resp.pieces(2)) == b"hello world"


def test_silence_before_the_headers_is_a_timeout_and_a_closed_port_a_connect_failure(serve):
    server = serve(lambda server, conn, number: (server.read(conn), threading.Event().wait(3)))
    with pytest.raises(HTTPFailure) as info:
        _origin(server).post("/chat/completions", b"{}", {}, 0.3)
    assert info.value.phase == "timeout"
    with socket.socket() as unused:  # a port held, so nobody else can listen on it, but not listening
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        with pytest.raises(HTTPFailure) as info:
            Origin(f"http://127.0.0.1:{port}", size=1, connect_timeout=1).post("/x", b"", {}, 1)
    assert info.value.phase == "connect"


def test_only_http_and_https_base_urls_are_accepted():
    with pytest.raises(ValueError):
        Origin("file:///etc/passwd", size=1, connect_timeout=1)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make a test certificate (apt-get install openssl)")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kyma-test",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_https_upstreams_are_verified_and_kept_alive(serve, certificate):
    cert, key = certificate
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = serve(_keep_answering, tls=ctx)
    origin = _origin(server, "https", ca_certs=str(cert))
    for _ in range(2):
        resp = origin.post("/chat/completions", b"{}", {}, 2)
        assert resp.status == 200 and b"".join(resp.pieces(2)) == b"{}"
    assert server.connections == 1
    with pytest.raises(HTTPFailure) as info:  # the system's CAs do not vouch for a self-signed certificate
        _origin(server, "https").post("/chat/completions", b"{}", {}, 2)
    assert info.value.phase == "connect" and "SSL" in info.value.detail


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_stream_ends_at_done_though_the_upstream_keeps_its_body_open(serve):
    # After [DONE] the adapter reads the body's end to keep the connection, but within a budget
    # in all: an upstream trickling comments forever (never ending its chunked body) used to hold
    # the stream's last event, a read at a time.
    from kyma.providers.openai_compat import OpenAICompatAdapter
    from kyma.providers.routes import Provider, Route

    def script(server, conn, number):
        server.read(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + _chunk(b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n')
                     + _chunk(b"data: [DONE]\n\n"))
        for _ in range(400):  # 40 s of comments, unless the client hangs up first
            conn.sendall(_chunk(b": still here\n\n"))
            time.sleep(0.1)

    server = serve(script)
    adapter = OpenAICompatAdapter(pool_size=2, connect_timeout=2, first_byte_timeout=5, idle_timeout=5)
    route = Route("m", Provider("trickle", f"http://127.0.0.1:{server.port}/v1"), "m")
    stream = adapter.stream(route, {"messages": []}, {}, None)
    assert stream.wait_headers(5)
    with gevent.Timeout(20, AssertionError("the stream never ended after [DONE]")):
        got = [c for c in stream.chunks(lambda: 1.0) if c is not None]
    assert [c["choices"][0]["delta"]["content"] for c in got] == ["hi"]
    stream.close()
    # Dropped, not pooled: a half-read connection would hand the next call the rest of this body.
    assert adapter._origin(route.provider.base_url).pool._socket_queue.qsize() == 0


def test_an_ip_upstream_is_looked_up_once_and_a_named_one_again_after_a_while(serve, monkeypatch):
    # Thousands of streams opening at once each need a new connection: no lookup hop for each.
    import gevent.socket

    import kyma.providers.http as http

    real, asked = gevent.socket.getaddrinfo, []
    monkeypatch.setattr(gevent.socket, "getaddrinfo", lambda host, *a: asked.append(host) or real(host, *a))
    server = serve(_keep_answering)
    by_ip = _origin(server)
    socks = [by_ip.connect() for _ in range(3)]  # three at once: three new connections
    assert asked == ["127.0.0.1"]
    for s in socks:
        by_ip.pool.release_socket(s)

    now = [1000.0]
    monkeypatch.setattr(http.time, "monotonic", lambda: now[0])
    by_name = Origin(f"http://localhost:{server.port}/v1", size=4, connect_timeout=2)
    for _ in range(2):
        by_name.pool.release_socket(by_name.connect())
    assert asked.count("localhost") == 1
    now[0] += http.RESOLVE_SECONDS + 1
    by_name.pool.release_socket(by_name.connect())
    assert asked.count("localhost") == 2
