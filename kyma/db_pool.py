"""A PostgreSQL connection pool whose waiters are served in arrival order.

peewee's pool makes a waiter poll: it sleeps on a condition for up to a second, then races every
other greenlet for the freed connection, new arrivals included. With thousands of streams per
worker the early waiters kept losing to the late ones until their wait ran out (500s after 30 s)
while each of them woke once a second for nothing. Here a connection's turn passes straight
from the greenlet that gives it back to the one that has waited longest.

peewee also checks every connection it hands out with a `SELECT 1` round trip: under load, one
more round trip per check-out than the work itself needs. Here only a connection that sat idle in
the pool for a while is checked; one given back moments ago is handed out as it is.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from playhouse.pool import MaxConnectionsExceeded
from playhouse.postgres_ext import PooledPsycopg3Database


class Turns:
    """At most n holders; waiters get a freed turn in arrival order (no barging)."""

    def __init__(self, n: int):
        self.free = n
        self.waiting: deque[threading.Event] = deque()
        self.lock = threading.Lock()  # gevent's under a patched worker; real for CLI threads

    def acquire(self, timeout: float) -> bool:
        """Take a turn; False when none came within `timeout` seconds."""
        with self.lock:
            if self.free > 0 and not self.waiting:
                self.free -= 1
                return True
            turn = threading.Event()
            self.waiting.append(turn)
        if turn.wait(timeout):
            return True
        with self.lock:
            try:
                self.waiting.remove(turn)
            except ValueError:
                return True  # handed over just as the wait ran out: it is ours
        return False

    def release(self) -> None:
        """Give a turn back: to the longest waiter, else to the pool."""
        with self.lock:
            if self.waiting:
                self.waiting.popleft().set()
            else:
                self.free += 1


# A pooled connection idle longer than this is checked with a round trip before it is handed out (a
# server restart or a proxy's idle cut shows there, not as a failed request); a busier one is not.
CHECK_AFTER_IDLE_SECONDS = 2.0


class FairPooledDatabase(PooledPsycopg3Database):
    """peewee's PostgreSQL pool, with a greenlet's turn taken before connect and given back at close."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._turns = Turns(self._max_connections)
        self._given_back: dict[int, float] = {}  # connection key → when it last came back to the pool

    def _is_closed(self, conn) -> bool:
        given_back = self._given_back.get(self.conn_key(conn))
        recent = given_back is not None and time.monotonic() - given_back < CHECK_AFTER_IDLE_SECONDS
        if recent and not conn.closed and self._adapter.txn_status(conn) == self._adapter.txn_idle:
            return False  # it answered moments ago and is idle: no round trip to ask again
        return super()._is_closed(conn)

    def _close(self, conn, close_conn=False):
        self._given_back[self.conn_key(conn)] = time.monotonic()
        return super()._close(conn, close_conn)

    def _close_raw(self, conn):
        self._given_back.pop(self.conn_key(conn), None)
        return super()._close_raw(conn)

    def connect(self, reuse_if_open=False):
        if not self.is_closed():  # this greenlet holds one already: peewee decides (reuse or refuse)
            return super().connect(reuse_if_open)
        if not self._turns.acquire(self._wait_timeout):
            raise MaxConnectionsExceeded("Max connections exceeded, timed out attempting to connect.")
        try:
            return super().connect(reuse_if_open)
        except BaseException:
            self._turns.release()
            raise

    def close(self):
        held = not self.is_closed()
        try:
            return super().close()
        finally:
            if held and self.is_closed():
                self._turns.release()
