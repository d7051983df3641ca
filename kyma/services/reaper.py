"""The hold reaper: a greenlet per gateway worker that releases abandoned holds every minute.

It also prunes rate-limit buckets that have left the window (the limiter's hot path no longer deletes)
and logs what the WAL checkpoint thread could not (kyma.wal).
"""

from __future__ import annotations

import logging
import os
import time

from flask import Flask

from kyma import wal
from kyma.db import connected
from kyma.greenlets import gevent_patched
from kyma.services import ledger, window_stores

log = logging.getLogger(__name__)

REAP_INTERVAL_SECONDS = 60


def _reap_forever(interval: float) -> None:
    import gevent

    while True:
        try:
            with connected():
                ledger.reap_expired_holds()
        except Exception:  # keep reaping next round; the reason is logged, not swallowed
            log.exception("hold reaper round failed")
        try:
            window_stores.prune_database_buckets(int(time.time()))
        except Exception:  # as above: retried next round, logged
            log.exception("rate-limit bucket prune failed")
        for message in wal.take_errors():
            log.error(message)
        gevent.sleep(interval)


def register_reaper(app: Flask, interval: float = REAP_INTERVAL_SECONDS) -> None:
    """Start the reaper lazily, on a worker's first request, once per process (gevent workers only)."""
    started_in: set[int] = set()

    @app.before_request
    def _start_reaper():
        if os.getpid() in started_in or not gevent_patched():
            return
        started_in.add(os.getpid())
        import gevent

        gevent.spawn(_reap_forever, interval)
