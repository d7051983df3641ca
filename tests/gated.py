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
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

import requests

RACE_SECONDS = 60  # the longest gated() waits for every request to be decided: a bound, not a timing claim
GATE = {"X-Kyma-Sim-Fault": "gate:70"}  # a held request waits longer than the race may take
FIRST_BYTE_TIMEOUT = 75  # for a racing gateway: longer than the gate's wait, shorter than its clients' (90 s)


def concurrently(calls: Sequence[Callable[[], object]]) -> list:
    """Run the calls at once (a barrier starts them together); their results in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in together(pool, calls)]


def together(pool: ThreadPoolExecutor, calls: Sequence[Callable[[], object]]) -> list[Future]:
    """Submit the calls behind one barrier, so that they start together and race each other."""
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait()
        return call()

    return [pool.submit(run, call) for call in calls]


def gated(simulators: Sequence[str], calls: Sequence[Callable[[], object]]) -> list:
    """Run the calls at once and open the simulators' gates once each is answered or waiting; results in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = together(pool, calls)
        try:
            deadline = time.monotonic() + RACE_SECONDS
            while (decided := sum(f.done() for f in futures) + waiting(simulators)) < len(calls):
                assert time.monotonic() < deadline, f"{decided} of {len(calls)} requests decided in {RACE_SECONDS} s"
                time.sleep(0.05)
            undone = sum(not f.done() for f in futures)  # none can finish now but through the gate
        finally:
            released = release(simulators)
        # Every request not answered yet was held, and at least one was: the race really went through the gate.
        assert released == undone > 0, f"{released} released, {undone} unanswered"
        return [f.result() for f in futures]


def release(simulators: Sequence[str]) -> int:
    """Open every simulator's gate, even when one of them cannot be reached; how many were let through."""
    failed, released = [], 0
    for url in simulators:
        try:
            answer = requests.post(f"{url}/sim/gate/release", timeout=10)
            answer.raise_for_status()
            released += answer.json()["released"]
        except requests.RequestException as exc:
            failed.append(exc)
    if failed:
        raise failed[0]
    return released


def waiting(simulators: Sequence[str]) -> int:
    """How many requests wait at the simulators' gates now."""
    return sum(requests.get(f"{url}/sim/stats", timeout=10).json()["gated"] for url in simulators)
