"""What the cross-process race tests run in each spawned process, kept apart from the test modules.

A spawned process imports the module its target lives in: here that is the gateway's ledger and rate
limiter, not pytest, hypothesis and a test module's own imports, which it would pay for six times a test.
"""

from __future__ import annotations

import multiprocessing

from kyma.db import init_db
from kyma.errors import RateLimited
from kyma.services import ledger
from kyma.services.ratelimit import Limiter
from kyma.services.tiers import Tier
from kyma.services.window_stores import DatabaseStore, RedisStore

START = 1_000_000.0


def race_context():
    """A multiprocessing context whose processes fork from one server that has imported this module.

    A race's processes then start without importing the gateway again (the server paid for that once
    per pytest process), and are no fork of pytest, whose connections and threads they would share.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def tier(rpm=10, per_model=10, tpm=100_000, max_request=50_000) -> Tier:
    return Tier(level=0, name="test", min_purchased_usd=0, rpm=rpm, per_model_rpm=per_model, tpm=tpm,
                max_tokens_per_request=max_request)


class Clock:
    def __init__(self, t: float = START):
        self.t = t

    def __call__(self) -> float:
        return self.t


def outcomes(limiter, t, n, model="m", prompt=10, max_tokens=10, account=1):
    ok = 0
    for _ in range(n):
        try:
            limiter.admit(account, t, model, prompt, max_tokens)
            ok += 1
        except RateLimited:
            pass
    return ok


def hammer(backend: str, target: str, barrier, results, attempts: int) -> None:
    """Ask the limiter `attempts` times for account 7, all processes at once; put how many it admitted."""
    if backend == "redis":
        url, prefix = target.split("|")
        store = RedisStore(url, prefix)
    else:
        init_db(target)
        store = DatabaseStore()
    limiter = Limiter(store, Clock())  # one instant: nothing refills while they race
    barrier.wait()
    results.put(outcomes(limiter, tier(rpm=10, per_model=10), attempts, account=7))


def hold_many(url: str, account_id: int, barrier, results, tag: str, attempts: int) -> None:
    """Place `attempts` holds of 100_000 on one account, all processes at once; put how many were placed."""
    init_db(url)
    barrier.wait()
    won = sum(ledger.place_hold(account_id, f"{tag}-{i}", 100_000) for i in range(attempts))
    results.put(won)
