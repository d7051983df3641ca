"""Upstream calls through an HTTP proxy (forwarding and CONNECT) and against a private CA."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from kyma.providers.egress import Egress, parse_proxy
from kyma.providers.http import HTTPFailure, Origin, Phase, parse_base_url
from kyma.providers.openai_compat import OpenAICompatAdapter
from kyma.providers.routes import Provider, Route
from tests.test_upstream_http import Scripted, _keep_answering

_BODY = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}'
REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)


class TinyProxy(Scripted):
    """An HTTP proxy on 127.0.0.1: CONNECT tunnels and absolute-form forwarding; it records each request head."""

    def __init__(self, refuse_connect: bool = False):
        self.refuse_connect = refuse_connect
        self.heads: list[bytes] = []
        super().__init__(lambda server, conn, number: self._relay(conn))
        self.url = f"http://127.0.0.1:{self.port}"

    def _relay(self, conn):
        upstream = None
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, rest = data.partition(b"\r\n\r\n")
            self.heads.append(head)
            method, target, _ = head.split(b"\r\n")[0].split(b" ", 2)
            if method == b"CONNECT":
                if self.refuse_connect:
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    return
                host, port = target.rsplit(b":", 1)
                upstream = socket.create_connection((host.decode(), int(port)))
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                first = rest
            else:  # absolute form: http://host:port/path, sent on as origin form
                url = parse_base_url(target.decode())
                upstream = socket.create_connection((url.hostname, url.port or 80))
                line = b"%s %s HTTP/1.1" % (method, (url.path or "/").encode())
                first = b"\r\n".join([line, *head.split(b"\r\n")[1:]]) + b"\r\n\r\n" + rest
            if first:
                upstream.sendall(first)
            threading.Thread(target=self._pipe, args=(upstream, conn), daemon=True).start()
            self._pipe(conn, upstream)
        except OSError:
            pass
        finally:  # Scripted closes the client's connection
            if upstream is not None:
                upstream.close()

    @staticmethod
    def _pipe(src, dst):
        try:
            while piece := src.recv(65536):
                dst.sendall(piece)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass



@pytest.fixture()
def started():
    things = []

    def start(thing):
        things.append(thing)
        return thing

    yield start
    for thing in things:
        thing.close()


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory):
    """A CA of our own and a certificate for 127.0.0.1 it signed (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make test certificates (apt-get install openssl)")
    d = tmp_path_factory.mktemp("ca")

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kyma test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr")
    (d / "ext.cnf").write_text("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n"
                               "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
                               "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "server.pem", d / "server.key")
    return d / "ca.pem", ctx


def _route(scheme: str, server) -> Route:
    return Route("m", Provider("p", f"{scheme}://127.0.0.1:{server.port}/v1"), "m")


def _complete(adapter, route):
    return adapter.complete(route, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, {}, None)


def _answering(server, conn, number):
    while server.read(conn):
        conn.sendall(REPLY)


def test_a_plain_upstream_is_reached_through_the_proxy_in_http_proxy(started):
    upstream = started(Scripted(_answering))
    proxy = started(TinyProxy())
    egress = Egress.from_settings("", "", environ={"HTTP_PROXY": proxy.url})
    adapter = OpenAICompatAdapter(pool_size=2, connect_timeout=2, first_byte_timeout=5, idle_timeout=5, egress=egress)
    for _ in range(2):
        assert _complete(adapter, _route("http", upstream)).body["choices"][0]["message"]["content"] == "hi"
    assert proxy.heads[0].startswith(b"POST http://127.0.0.1:%d/v1/chat/completions HTTP/1.1" % upstream.port)
    assert len(upstream.requests) == 2 and upstream.connections == 1  # kept alive through the proxy


def test_an_https_upstream_is_tunnelled_with_connect_and_verified_end_to_end(started, private_ca):
    ca, tls = private_ca
    upstream = started(Scripted(_answering, tls=tls))
    proxy = started(TinyProxy())
    egress = Egress.from_settings(f"http://user:p%40ss@127.0.0.1:{proxy.port}", str(ca), environ={})
    adapter = OpenAICompatAdapter(pool_size=2, connect_timeout=2, first_byte_timeout=5, idle_timeout=5, egress=egress)
    assert _complete(adapter, _route("https", upstream)).body["choices"][0]["message"]["content"] == "hi"
    head = proxy.heads[0].decode()
    assert head.startswith(f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1")
    assert "Proxy-Authorization: Basic dXNlcjpwQHNz" in head  # user:p@ss, the URL's escape undone
    assert b"/v1/chat/completions" in upstream.requests[0]  # the request itself went inside the tunnel


def test_no_proxy_and_the_none_setting_connect_directly(started):
    upstream = started(Scripted(_answering))
    proxy = started(TinyProxy())
    for egress in (Egress.from_settings("", "", environ={"http_proxy": proxy.url, "NO_PROXY": "example.com,127.0.0.1"}),
                   Egress.from_settings("none", "", environ={"HTTP_PROXY": proxy.url})):
        adapter = OpenAICompatAdapter(pool_size=2, connect_timeout=2, first_byte_timeout=5, idle_timeout=5,
                                      egress=egress)
        _complete(adapter, _route("http", upstream))
    assert proxy.heads == [] and len(upstream.requests) == 2


def test_a_proxy_that_refuses_the_tunnel_is_a_connect_failure(started, private_ca):
    ca, tls = private_ca
    upstream = started(Scripted(_answering, tls=tls))
    proxy = started(TinyProxy(refuse_connect=True))
    origin = Origin(f"https://127.0.0.1:{upstream.port}/v1", size=2, connect_timeout=2, ca_certs=str(ca),
                    proxy=parse_proxy(proxy.url, "test"))
    with pytest.raises(HTTPFailure) as info:
        origin.post("/chat/completions", b"{}", {}, 2)
    assert info.value.phase is Phase.CONNECT and "403" in info.value.detail
    assert upstream.connections == 0


def test_a_private_ca_is_trusted_only_through_the_ca_bundle_setting(started, private_ca, monkeypatch):
    ca, tls = private_ca
    upstream = started(Scripted(_keep_answering, tls=tls))
    url = parse_base_url(f"https://127.0.0.1:{upstream.port}/v1")
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)

    def call(egress: Egress):
        origin = Origin(url.geturl(), size=2, connect_timeout=2, ca_certs=egress.ca_bundle, proxy=egress.proxy_for(url))
        return origin.post("/chat/completions", b"{}", {}, 2)

    with pytest.raises(HTTPFailure) as info:  # the system's CAs do not vouch for ours
        call(Egress.from_settings("", ""))
    assert info.value.phase is Phase.CONNECT and "SSL" in info.value.detail
    for egress in (Egress.from_settings("", str(ca)),  # KYMA_CA_BUNDLE
                   Egress.from_settings("", "", environ={"SSL_CERT_FILE": str(ca)}),
                   Egress.from_settings("", "", environ={"REQUESTS_CA_BUNDLE": str(ca)})):
        resp = call(egress)
        assert resp.status == 200 and b"".join(resp.pieces(2)) == b"{}"


def test_the_settings_win_over_the_standard_variables(tmp_path):
    other = tmp_path / "other.pem"
    other.write_text("")
    env = {"HTTPS_PROXY": "http://a:3128", "http_proxy": "http://b:3129", "HTTP_PROXY": "http://c:1",
           "SSL_CERT_FILE": str(other), "REQUESTS_CA_BUNDLE": "/nonexistent"}
    egress = Egress.from_settings("", "", environ=env)
    assert (egress.https_proxy.host, egress.https_proxy.port) == ("a", 3128)
    assert egress.http_proxy.host == "b"  # lower case first, as curl reads them
    assert egress.ca_bundle == str(other)
    mine = tmp_path / "mine.pem"
    mine.write_text("")
    egress = Egress.from_settings("proxy.internal:8080", str(mine), environ=env)
    assert egress.http_proxy == egress.https_proxy and egress.https_proxy.host == "proxy.internal"
    assert egress.ca_bundle == str(mine)


@pytest.mark.parametrize("no_proxy, host, bypassed", [
    ("*", "api.example.com", True), ("example.com", "api.example.com", True),
    (".example.com", "api.example.com", True), ("*.example.com", "example.com", True),
    ("example.com", "badexample.com", False), ("api.example.com:8443", "api.example.com", False),
    ("api.example.com:443", "api.example.com", True), ("", "api.example.com", False),
])
def test_no_proxy_entries(no_proxy, host, bypassed):
    egress = Egress.from_settings("http://proxy:3128", "", environ={"NO_PROXY": no_proxy})
    assert (egress.proxy_for(parse_base_url(f"https://{host}/v1")) is None) is bypassed


@pytest.mark.parametrize("value", ["https://proxy:3128", "socks5://proxy:1080", "http://:3128", "http://p:notaport",
                                   "http://user:secret@proxy:3128/path"])
def test_a_bad_proxy_is_refused_at_start_without_echoing_it(value):
    with pytest.raises(ValueError) as info:
        Egress.from_settings("", "", environ={"HTTPS_PROXY": value})
    assert "HTTPS_PROXY" in str(info.value) and "secret" not in str(info.value)
    assert "secret" not in repr(parse_proxy("http://user:secret@proxy:3128", "x"))


def test_a_ca_bundle_setting_that_is_not_a_file_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="KYMA_CA_BUNDLE"):
        Egress.from_settings("", str(tmp_path / "missing.pem"), environ={})
    # The standard variables serve many programs: one that names no file is passed over, as ssl does.
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    egress = Egress.from_settings("", "", environ={"SSL_CERT_FILE": str(tmp_path), "REQUESTS_CA_BUNDLE": str(bundle)})
    assert egress.ca_bundle == str(bundle)
    assert Egress.from_settings("", "", environ={"SSL_CERT_FILE": str(tmp_path / "gone.pem")}).ca_bundle is None


def test_requests_without_a_proxy_keep_their_origin_form(started):
    upstream = started(Scripted(_keep_answering))
    origin = Origin(f"http://127.0.0.1:{upstream.port}/v1", size=2, connect_timeout=2)
    assert origin.post("/chat/completions", b"{}", {}, 2).status == 200
    assert upstream.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1")


def test_the_gateway_takes_its_proxy_from_the_settings_and_refuses_a_bad_one_at_start(tmp_path):
    from kyma.config import Settings
    from kyma.providers.registry import UpstreamPool

    def pool(proxy: str) -> UpstreamPool:
        return UpstreamPool(Settings.from_env({"instance_dir": tmp_path, "secret_key": "s", "upstream_proxy": proxy}))

    adapter = pool("http://proxy.internal:3128").adapter(Route("m", Provider("p", "https://api.example.com/v1"), "m"))
    origin = adapter._origin("https://api.example.com/v1")
    assert (adapter.egress.https_proxy.host, adapter.egress.https_proxy.port) == ("proxy.internal", 3128)
    assert origin.pool._connection_host == "proxy.internal" and origin.pool._use_proxy
    with pytest.raises(ValueError, match="KYMA_UPSTREAM_PROXY"):
        pool("socks5://proxy.internal:1080")
