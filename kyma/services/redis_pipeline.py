"""Redis commands that a worker's greenlets send at the same moment go out in one pipeline.

Every request makes a few Redis calls (its rate-limit admission, the breaker state of its route,
its token correction), each a round trip of its own: a send, a receive and two greenlet switches
on the gateway's side, one read and one write for Redis. Under gevent a worker runs many requests
at once, so commands are queued and one greenlet sends all that are queued in one pipeline when
the event loop next comes round; each caller waits for its own reply, so what a caller sees, and
when its command has run, is as before. Outside gevent (tests, CLI) a command goes straight out.

A live sender answers every caller within its round trips, which the client's own socket timeouts
bound (redis-py raises TimeoutError past them, and every caller gets it). Should the sender die
instead (killed), every caller it leaves waiting gets Redis's ConnectionError at once, which the
stores already treat as Redis being unavailable, and the next command starts a new sender. A timer
per call would bound the wait too, at a CPU cost on every Redis call (docs/benchmarks.md), for no
case these two leave open.
"""

from __future__ import annotations

import os
from typing import Any

from kyma.greenlets import gevent_patched


class Pipeliner:
    """One Redis client's commands, sent together with whatever this worker's other greenlets send."""

    def __init__(self, client):
        self.client = client
        self._queue: list[tuple[tuple, Any]] = []
        self._sending: list[tuple[tuple, Any]] = []  # taken from the queue, replies not yet given
        self._wake = None
        self._sender = None
        self._pid = 0

    def execute(self, *command) -> Any:
        """Run one command (as `execute_command` takes it) and return its reply or raise its error."""
        if not gevent_patched():
            return self.client.execute_command(*command)
        from gevent.event import AsyncResult

        if self._pid != os.getpid() or self._sender.dead:  # a forked worker, or a killed sender: a new one
            if self._pid == os.getpid():
                self._sender_died(self._sender)  # its waiters, before _start drops them
            self._start()
        reply = AsyncResult()
        self._queue.append((command, reply))
        self._wake.set()
        return reply.get()

    def _start(self) -> None:
        import gevent
        from gevent.event import Event

        self._pid, self._queue, self._sending, self._wake = os.getpid(), [], [], Event()
        self._sender = gevent.spawn(self._send_forever)
        self._sender.link(self._sender_died)

    def _sender_died(self, sender) -> None:
        """Fail every caller the dead sender leaves waiting: no one else would ever answer them."""
        if sender is not self._sender:  # a sender replaced already: its callers went with it
            return
        from redis.exceptions import ConnectionError as SenderGone

        waiting, self._queue, self._sending = self._sending + self._queue, [], []
        gone = SenderGone("the worker's Redis sender stopped")
        for _, reply in waiting:
            if not reply.ready():
                reply.set_exception(gone)

    def _send_forever(self) -> None:
        import gevent

        while True:
            self._wake.wait()
            self._wake.clear()
            gevent.sleep(0)  # the greenlets ready now queue their commands too
            self._sending, self._queue = self._queue, []
            if self._sending:
                self._send(self._sending)
            self._sending = []

    def _send(self, queued: list[tuple[tuple, Any]]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for command, _ in queued:
                pipe.execute_command(*command)
            replies = pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every caller gets the error
            for _, reply in queued:
                reply.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, reply), value in zip(queued, replies):
            if isinstance(value, Exception):
                reply.set_exception(value)
            else:
                reply.set(value)
