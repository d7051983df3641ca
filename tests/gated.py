"""Races for credit whose requests the simulators hold at their gate until every one is decided.

Each request carries `X-Kyma-Sim-Fault: gate`, so a simulator holds it before answering. Once every
request has either come back (refused: 402, 429) or is waiting at a gate, the gates open together.
So every hold is placed before any request settles, however slow the machine, and no test guesses
how long admission takes. The gateway must wait longer for a first byte than the race takes: a request
it gave up on would still be counted at the gate.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import requests

GATE = {"X-Kyma-Sim-Fault": "gate"}


def gated(simulators: Sequence[str], calls: Sequence[Callable[[], object]]) -> list:
    """Run the calls at once and open the simulators' gates once each is answered or waiting; results in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        try:
            deadline = time.monotonic() + 60  # a bound on the polling, not a timing claim
            while (decided := sum(f.done() for f in futures) + waiting(simulators)) < len(calls):
                assert time.monotonic() < deadline, f"{decided} of {len(calls)} requests decided after a minute"
                time.sleep(0.05)
        finally:
            for url in simulators:
                requests.post(f"{url}/sim/gate/release", timeout=10)
        return [f.result() for f in futures]


def waiting(simulators: Sequence[str]) -> int:
    """How many requests wait at the simulators' gates now."""
    return sum(requests.get(f"{url}/sim/stats", timeout=10).json()["gated"] for url in simulators)
