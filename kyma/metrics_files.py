"""Where gunicorn's workers keep their Prometheus metric files, and emptying it before they start.

Each worker is a process of its own; with PROMETHEUS_MULTIPROC_DIR set, prometheus_client writes
every worker's values to files there and a scrape (by whichever worker takes it) adds them up. The
variable must be set before a worker imports prometheus_client, so the process that starts the
workers sets it; files a previous run left would otherwise be counted again, so it empties it first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def metrics_on(environ: MutableMapping[str, str]) -> bool:
    """KYMA_METRICS as Settings reads it."""
    return environ.get("KYMA_METRICS", "off").lower() in ("on", "1", "true", "yes")


def prepare(environ: MutableMapping[str, str], instance_dir: Path | None = None) -> Path | None:
    """With metrics on: an empty metrics directory (PROMETHEUS_MULTIPROC_DIR, or instance/prometheus),
    named in `environ` for the workers to inherit; None with metrics off."""
    if not metrics_on(environ):
        return None
    if environ.get(VARIABLE):
        path = Path(environ[VARIABLE])
    else:
        instance = instance_dir or Path(environ.get("KYMA_INSTANCE_DIR") or Path(__file__).resolve().parent.parent
                                        / "instance")
        path = instance / "prometheus"
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # prometheus_client's files only: the directory may be shared
        stale.unlink(missing_ok=True)
    environ[VARIABLE] = str(path)
    return path
