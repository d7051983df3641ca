"""gunicorn server hooks (`gunicorn -c python:kyma.gunicorn_hooks`): the workers' Prometheus files.

The launcher and the test helpers start gunicorn with this module; an operator's own gunicorn
command needs `-c python:kyma.gunicorn_hooks` too when KYMA_METRICS is on and there are several workers.
"""

from __future__ import annotations

import os

from kyma import metrics_files


def on_starting(server) -> None:
    """In the master, before any worker exists: an empty metrics directory the workers inherit."""
    metrics_files.prepare(os.environ)


def child_exit(server, worker) -> None:
    """A worker is gone: its live gauges (open streams) stop counting; its counters stay summed."""
    if metrics_files.metrics_on(os.environ) and os.environ.get(metrics_files.VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
