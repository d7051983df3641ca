"""Races for credit whose requests the simulators hold at their gate until every one is decided.

Each request carries `X-Kyma-Sim-Fault: gate`, so a simulator holds it before answering. Once every
request has either come back (refused: 402, 429) or is waiting at a gate, the gates open together.
So every hold is placed before any request settles, however slow the machine, and no test guesses
how long admission takes. The gateway must wait longer for a first byte (FIRST_BYTE_TIMEOUT) than the
race may take: a request it gave up on would still be counted at the gate.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import requests

GATE = {"X-Kyma-Sim-Fault": "gate"}
RACE_SECONDS = 60  # the longest gated() waits for every request to be decided: a bound, not a timing claim
FIRST_BYTE_TIMEOUT = 75  # for a racing gateway: longer than RACE_SECONDS, shorter than its clients wait (90 s)


def gated(simulators: Sequence[str], calls: Sequence[Callable[[], object]]) -> list:
    """Run the calls at once and open the simulators' gates once each is answered or waiting; results in order."""
    start = threading.Barrier(len(calls))  # all at once, so admissions race each other

    def run(call):
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        try:
            deadline = time.monotonic() + RACE_SECONDS
            while (decided := sum(f.done() for f in futures) + waiting(simulators)) < len(calls):
                assert time.monotonic() < deadline, f"{decided} of {len(calls)} requests decided in {RACE_SECONDS} s"
                time.sleep(0.05)
        finally:
            release(simulators)
        return [f.result() for f in futures]


def release(simulators: Sequence[str]) -> None:
    """Open every simulator's gate, even when one of them cannot be reached."""
    failed = []
    for url in simulators:
        try:
            requests.post(f"{url}/sim/gate/release", timeout=10).raise_for_status()
        except requests.RequestException as exc:
            failed.append(exc)
    if failed:
        raise failed[0]


def waiting(simulators: Sequence[str]) -> int:
    """How many requests wait at the simulators' gates now."""
    return sum(requests.get(f"{url}/sim/stats", timeout=10).json()["gated"] for url in simulators)
