"""The gateway's gunicorn worker: gunicorn's gevent worker, accepting its share of the listen queue.

gunicorn's gevent worker accepts one connection each time its listening socket wakes it when there
are several workers (so that one of them cannot take a whole burst while another idles). But a busy
worker is woken once per turn of its event loop: one connection per turn let the listen queue
overflow during a burst of streams, and the kernel then drops connections, which clients see as a
second or more of retransmission delay, or as resets. So each wake-up takes its worker's share of
what is queued: one when one is waiting, half of a burst with two workers, never more than
ACCEPT_BATCH. (A fixed batch let the worker awake first take all of a client's 32 keep-alive
connections, and the other idle.)

gunicorn loads it by name: kyma.gunicorn_hooks selects it (`worker_class`), so the launcher, the
tests and an operator's `-c python:kyma.gunicorn_hooks` all run it.
"""

from __future__ import annotations

import socket
import struct
from functools import partial

from gevent.server import StreamServer
from gunicorn.workers.ggevent import GeventWorker

# The most connections a worker accepts each time its listening socket wakes it.
ACCEPT_BATCH = 64
# struct tcp_info: on a listening socket Linux reports the accept queue's length as tcpi_unacked.
_TCP_INFO_QUEUED = 24


def accept_share(sock, workers: int) -> int:
    """How many connections to accept now: this worker's share of the listen queue, 1 to ACCEPT_BATCH."""
    try:
        queued = struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32), _TCP_INFO_QUEUED)[0]
    except (OSError, AttributeError, struct.error):  # not a TCP socket, or no TCP_INFO here
        return 1 if workers > 1 else ACCEPT_BATCH
    return max(1, min(ACCEPT_BATCH, -(-queued // max(1, workers))))


class ShareAcceptServer(StreamServer):
    """gevent's StreamServer whose every wake-up accepts accept_share() connections."""

    def __init__(self, listener, *, workers: int, **kwargs):
        self.workers = workers  # before StreamServer's own checks read max_accept
        super().__init__(listener, **kwargs)

    @property
    def max_accept(self) -> int:
        """Read by gevent once per wake-up, as the number of accepts to try."""
        return accept_share(self.socket, self.workers)


class ShareAcceptWorker(GeventWorker):
    """gunicorn's gevent worker, serving each listener with a ShareAcceptServer."""

    def server_class(self, listener, *, spawn, ssl_context=None, **_wsgi) -> ShareAcceptServer:
        """The server for one listener: gunicorn calls a worker's server_class with a WSGI server's
        arguments; this one serves with gunicorn's own connection handler, as the plain gevent worker
        does, and ignores them."""
        tls = {"ssl_context": ssl_context} if ssl_context is not None else {}
        return ShareAcceptServer(listener, workers=self.cfg.workers, handle=partial(self.handle, listener),
                                 spawn=spawn, **tls)
