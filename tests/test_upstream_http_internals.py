"""The geventhttpclient internals kyma/providers/http.py relies on, each as a test that fails the day it changes.

http.py reads the parser's decoded-body buffer (`_body_buffer`) and the response's socket (`_sock`),
overrides the pool's liveness check (`_is_socket_alive`) and its address lookup (`_resolve`, which
reads `_connection_host`): no public API gives a read that can time out and resume, a check that
does not yield to the event loop, or a lookup kept across connects. Measured against urllib3
and geventhttpclient's public HTTPClient, this is the cheapest client (docs/benchmarks.md), so the
version is pinned exactly and these tests say what each internal must still mean.
"""

from __future__ import annotations

import re
import socket
from importlib.metadata import version
from pathlib import Path

from geventhttpclient.connectionpool import ConnectionPool

from kyma.providers import http
from kyma.providers.http import Response

ROOT = Path(__file__).resolve().parent.parent
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"


class _Pool:
    """Records what a response hands back to its pool."""

    def __init__(self):
        self.returned, self.released = [], []

    def return_socket(self, sock):
        self.returned.append(sock)

    def release_socket(self, sock):
        self.released.append(sock)
        sock.close()


def test_the_installed_geventhttpclient_is_the_pinned_one():
    pin = re.search(r"^geventhttpclient==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pin, "requirements.txt must pin geventhttpclient exactly (its internals are used)"
    assert version("geventhttpclient") == pin.group(1)


def test_the_body_buffer_holds_the_decoded_body_and_taking_from_it_consumes_it():
    ours, theirs = socket.socketpair()
    pool = _Pool()
    resp = Response(ours, pool, HEAD + b"5\r\nhello\r\n")  # the pre_buffered head and a first chunk
    assert resp.status == 200 and resp._sock is ours
    assert isinstance(resp._body_buffer, bytearray) and bytes(resp._body_buffer) == b"hello"  # de-chunked
    del resp._body_buffer[:]
    resp.feed(b"6\r\n world\r\n")
    assert bytes(resp._body_buffer) == b" world" and not resp.message_complete
    resp.feed(b"0\r\n\r\n")
    # The message is complete: the socket is handed back to the pool and the response lets go of it.
    assert resp.message_complete and resp._sock is None and pool.returned == [ours]
    theirs.close()
    ours.close()


def test_pieces_reads_through_the_socket_the_response_holds():
    ours, theirs = socket.socketpair()
    pool = _Pool()
    resp = Response(ours, pool, HEAD)
    theirs.sendall(b"3\r\nabc\r\n0\r\n\r\n")
    assert b"".join(resp.pieces(2)) == b"abc" and pool.returned == [ours]
    theirs.close()
    ours.close()


def test_a_released_half_read_response_drops_its_socket():
    ours, theirs = socket.socketpair()
    pool = _Pool()
    resp = Response(ours, pool, HEAD + b"5\r\nhello\r\n")
    resp.close()
    assert resp._sock is None and pool.released == [ours] and pool.returned == []
    theirs.close()


def test_the_pool_asks_is_socket_alive_before_reusing_a_pooled_socket():
    asked = []

    class Probe(ConnectionPool):
        def _is_socket_alive(self, sock):
            asked.append(sock)
            return False  # so the pool must drop it and open a fresh one

        def _create_socket(self):
            return "fresh"

    pool = Probe("127.0.0.1", 9, "127.0.0.1", 9, size=1)
    stale, peer = socket.socketpair()
    assert pool.get_socket() == "fresh"
    pool.return_socket(stale)  # pooled: the next get_socket must ask about it
    assert pool.get_socket() == "fresh" and asked == [stale] and stale.fileno() == -1  # dropped and closed
    peer.close()


def test_our_pools_use_our_liveness_check():
    for cls in (http._Pool, http._TLSPool):
        assert cls._is_socket_alive is http._Tuned._is_socket_alive
    a, b = socket.socketpair()
    pool = http._Pool("127.0.0.1", 9, "127.0.0.1", 9, size=1)
    assert pool._is_socket_alive(a)
    b.close()  # the peer's FIN makes it readable: not alive
    assert not pool._is_socket_alive(a)
    a.close()


def test_the_pool_connects_to_what_resolve_answers_for_its_connection_host():
    """_Tuned keeps `_resolve`'s answer and reads `_connection_host` (the proxy's, with a proxy) to
    keep an IP address's answer for good: the pool must still resolve through both."""
    asked = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    class Probe(ConnectionPool):
        def _resolve(self):
            asked.append(self._connection_host)
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]

    pool = Probe("proxy.invalid", 3128, "upstream.invalid", 80, size=1)
    sock = pool.get_socket()
    try:
        assert asked == ["proxy.invalid"] and sock.getpeername() == ("127.0.0.1", port)
    finally:
        sock.close()
        listener.close()
    assert http._Pool("10.0.0.1", 3128, "upstream.invalid", 80, size=1)._literal  # the proxy's address
    assert not http._Pool("proxy.invalid", 3128, "10.0.0.1", 80, size=1)._literal


def test_the_relay_read_waits_on_gevents_own_read_watcher_and_can_time_out_then_read():
    """http.recv uses three gevent socket internals: the real non-blocking socket (`_sock`), its
    read watcher (`_read_event`) and its hub; gevent's public timed read costs a Timeout per wait."""
    import gevent
    import gevent.socket as gsocket
    import pytest

    pin = re.search(r"^gevent==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pin and version("gevent") == pin.group(1), "requirements.txt must pin gevent exactly (its internals are used)"
    ours, theirs = gsocket.socketpair()
    try:
        assert type(ours) is gsocket.socket
        assert ours._sock.gettimeout() == 0.0 and ours._read_event is not None and ours.hub is gevent.get_hub()
        with pytest.raises(socket.timeout):
            http.recv(ours, 0.01)
        theirs.sendall(b"now")
        assert http.recv(ours, 1) == b"now"
        later = gevent.spawn_later(0.01, theirs.sendall, b"later")
        assert http.recv(ours, 5) == b"later"  # woken by the watcher, not the timer
        later.join()
        theirs.close()
        assert http.recv(ours, 1) == b""
        assert not ours._read_event.active
    finally:
        ours.close()


def test_bytes_that_came_while_the_timer_ran_out_are_read_not_a_timeout(monkeypatch):
    """A worker that was busy elsewhere may find its timer and its bytes both due: the bytes win."""
    import gevent.socket as gsocket
    from gevent.hub import Waiter

    ours, theirs = gsocket.socketpair()
    try:
        theirs.sendall(b"waiting")
        calls = []

        class TimerFirst(Waiter):  # the loop ran the timer before the read watcher
            def get(self):
                calls.append(1)
                return http._WAITED_OUT

        monkeypatch.setattr(http, "Waiter", TimerFirst)
        raw_recv = ours._sock.recv
        first = []

        class Raw:  # the first try finds nothing yet; by the time the timer is due the bytes are there
            def recv(self, n):
                if not first:
                    first.append(1)
                    raise BlockingIOError
                return raw_recv(n)

        monkeypatch.setattr(ours, "_sock", Raw())
        assert http.recv(ours, 0.01) == b"waiting" and calls == [1]
    finally:
        monkeypatch.undo()
        ours.close()
        theirs.close()
