"""The hold reaper: a greenlet per gateway worker that releases abandoned holds every minute.

It also prunes rate-limit state whose allowance has long been full (the limiter's hot path never deletes)
and sign-up and log-in counters whose window has ended, deletes stored responses past their retention
and device log-ins past their expiry, and logs what the SQLite upkeep thread could not (kyma.wal): a
failed checkpoint as an error, a failed integrity check as critical.
"""

from __future__ import annotations

import logging
import os
import time

from flask import Flask

from kyma import wal
from kyma.db import connected
from kyma.greenlets import gevent_patched
from kyma.services import counters, device_login, ledger, responses_store, window_stores

log = logging.getLogger(__name__)

REAP_INTERVAL_SECONDS = 60


# (what, how): each chore runs every round, and one that fails does not stop the others.
CHORES = (
    ("hold reaper round", ledger.reap_expired_holds),
    ("rate-limit state prune", lambda: window_stores.prune_database_state(int(time.time()))),
    ("counter prune", lambda: counters.prune(int(time.time()))),
    ("expired stored responses", responses_store.delete_expired),
    ("expired device log-ins", device_login.prune),
)


def run_chores() -> None:
    """One round: every chore in a database connection, then the upkeep thread's reports; failures logged."""
    for what, chore in CHORES:
        try:
            with connected():  # the reaper runs outside any request
                chore()
        except Exception:  # retried next round; the reason is logged, not swallowed
            log.exception("%s failed", what)
    for report in wal.take_reports():
        log.log(logging.CRITICAL if report.critical else logging.ERROR, report.message)


def _reap_forever(interval: float) -> None:
    import gevent

    while True:
        run_chores()
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
