"""A warning about a shared store that is down, logged at most every few seconds.

The Redis stores fail open (limits per process, every circuit closed) and call this on each
failed request; one line every 10 s says the store is down without flooding the log.
"""

from __future__ import annotations

import logging
import time


class OutageWarning:
    """Log `message` (with the error) at WARNING, at most once per `every` seconds."""

    def __init__(self, logger: logging.Logger, message: str, every: float = 10.0):
        self._log, self._message, self._every = logger, message, every
        self._last = float("-inf")

    def __call__(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last > self._every:
            self._last = now
            self._log.warning(self._message, exc)
