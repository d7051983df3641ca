"""gunicorn's configuration for the gateway: its worker class (kyma.worker), and server hooks for the
gateway's Prometheus files and the directory they live in.

Each gunicorn worker is a process of its own; with PROMETHEUS_MULTIPROC_DIR set, prometheus_client
writes every worker's values to files there and a scrape (by whichever worker takes it) adds them
up. The variable must be set before a worker imports prometheus_client, so the process that starts
the workers sets it; files a previous run left would be counted again, so it empties it first.

The launcher and the test helpers load this file with `gunicorn -c <path of this file>`; an
operator's own command can say `-c python:kyma.gunicorn_hooks`. It imports nothing of the gateway,
so that any checkout's gunicorn (a benchmark's older base version too) can load it by path: it
selects kyma.worker only where the checkout being served has it, and gunicorn's gevent worker
elsewhere.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path
from typing import MutableMapping

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PATH = Path(__file__).resolve()
WORKER = "kyma.worker.ShareAcceptWorker"


def worker_class_name() -> str:
    """WORKER where the served checkout has kyma.worker (an older one does not), else gunicorn's gevent worker."""
    try:
        return WORKER if find_spec("kyma.worker") is not None else "gevent"
    except ImportError:  # no kyma package on the path at all
        return "gevent"


worker_class = worker_class_name()  # gunicorn's setting; a `-k` on the command line would override it


def metrics_on(environ: MutableMapping[str, str]) -> bool:
    """KYMA_METRICS as Settings reads it."""
    return environ.get("KYMA_METRICS", "off").lower() in ("on", "1", "true", "yes")


def prepare_metrics_dir(environ: MutableMapping[str, str], instance_dir: Path | None = None) -> Path | None:
    """With metrics on: an empty metrics directory (PROMETHEUS_MULTIPROC_DIR, or instance/prometheus),
    named in `environ` for the workers to inherit; None with metrics off."""
    if not metrics_on(environ):
        return None
    if environ.get(VARIABLE):
        path = Path(environ[VARIABLE])
    else:
        instance = instance_dir or Path(environ.get("KYMA_INSTANCE_DIR") or PATH.parent.parent / "instance")
        path = instance / "prometheus"
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # prometheus_client's files only: the directory may be shared
        stale.unlink(missing_ok=True)
    environ[VARIABLE] = str(path)
    return path


def on_starting(server) -> None:
    """gunicorn, in the master before any worker exists: an empty metrics directory the workers inherit."""
    prepare_metrics_dir(os.environ)


def child_exit(server, worker) -> None:
    """gunicorn: a worker is gone; its live gauges (open streams) stop counting, its counters stay summed."""
    if metrics_on(os.environ) and os.environ.get(VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker) -> None:
    """gunicorn, in a worker that is stopping: the request-log rows it still owes (refused while its database
    pool was full) are written before it goes, for a few seconds at most."""
    import sys

    deferred = sys.modules.get("kyma.services.deferred")  # loaded only if the worker queued something
    if deferred is not None and not deferred.drain(5):
        server.log.error("worker %s exits owing %d request-log rows", worker.pid, deferred.pending())
