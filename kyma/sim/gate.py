"""The `gate` fault: requests held until whoever tests the gateway releases them (POST /sim/gate/release).

A race for credit needs every request admitted or refused before any is answered. A fixed delay is a
guess a busy machine can lose; a test instead holds its requests here, waits until each is either
refused or waiting at a gate (GET /sim/stats says how many wait), and releases them together. A
provider's gate lives in its process (simulators run one gevent worker). A request waits at most the
fault's number of seconds, then gets a 504; one whose client went away still counts as waiting until
then (a waiting worker cannot see the disconnect).
"""

from __future__ import annotations

import threading


class Gate:
    """Where `gate` requests wait; release() lets through those waiting now, not later ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened = threading.Event()
        self.waiting = 0

    def wait(self, limit: float) -> bool:
        """Wait until released (True) or `limit` seconds pass (False)."""
        with self._lock:
            opened = self._opened
            self.waiting += 1
        try:
            return opened.wait(limit)
        finally:
            with self._lock:
                self.waiting -= 1

    def release(self) -> int:
        """Let everything waiting now through; returns how many that was."""
        with self._lock:
            opened, self._opened = self._opened, threading.Event()
            released = self.waiting
        opened.set()
        return released
