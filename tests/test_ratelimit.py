"""Tiered rate limits: sliding-window semantics, headers, and exactness across processes."""

from __future__ import annotations

import multiprocessing

import pytest

from kyma.db import init_db
from kyma.errors import PayloadTooLarge, RateLimited
from kyma.models import ALL_MODELS
from kyma.services.ratelimit import Limiter
from kyma.services.tiers import Tier
from kyma.services.window_stores import DatabaseStore, RedisStore
from tests.backends import REDIS_URL, postgres_schema, redis_prefix


def tier(rpm=10, per_model=10, tpm=100_000, max_request=50_000) -> Tier:
    return Tier(level=0, name="test", min_purchased_usd=0, rpm=rpm, per_model_rpm=per_model, tpm=tpm,
                max_tokens_per_request=max_request)


class Clock:
    def __init__(self, t: float = 1_000_000.0):
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


@pytest.fixture(params=["memory", "sqlite"])
def make_limiter(request, tmp_path):
    def make(clock):
        if request.param == "memory":
            return Limiter.in_memory(clock)
        db = init_db(f"sqlite:///{tmp_path / 'rl.db'}")
        db.create_tables(ALL_MODELS)
        return Limiter(DatabaseStore(), clock)
    return make


def test_rpm_admits_exactly_the_limit_and_429_carries_retry_after(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    first = limiter.admit(1, tier(rpm=5), "m", 10, 10)
    assert first.headers["x-ratelimit-limit-requests"] == "5"
    assert first.headers["x-ratelimit-remaining-requests"] == "4"
    assert first.headers["x-ratelimit-reset-requests"] == "60s"
    clock.t += 1
    assert outcomes(limiter, tier(rpm=5), 4) == 4
    with pytest.raises(RateLimited) as exc:
        limiter.admit(1, tier(rpm=5), "m", 10, 10)
    err = exc.value
    assert err.status == 429 and err.type == "rate_limit"
    assert err.message.startswith("Rate limit exceeded (5 requests/minute)")
    assert err.headers["Retry-After"] == "59"  # the first request leaves the window 59 s from now
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    clock.t += 59
    assert outcomes(limiter, tier(rpm=5), 2) == 1  # only the first request's slot came back


def test_no_burst_across_a_window_edge(make_limiter):
    """10 at t=59 s and 10 at t=61 s → only 10 in any rolling minute."""
    clock = Clock(1_000_059)
    limiter = make_limiter(clock)
    assert outcomes(limiter, tier(rpm=10), 10) == 10
    clock.t = 1_000_061
    assert outcomes(limiter, tier(rpm=10), 10) == 0
    clock.t = 1_000_119
    assert outcomes(limiter, tier(rpm=10), 10) == 10


def test_rejected_attempts_do_not_consume(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    assert outcomes(limiter, tier(rpm=3), 50) == 3
    clock.t += 60
    assert outcomes(limiter, tier(rpm=3), 5) == 3


def test_per_model_limit_names_the_model(make_limiter):
    limiter = make_limiter(Clock())
    t = tier(rpm=10, per_model=2)
    assert outcomes(limiter, t, 5, model="a") == 2
    assert outcomes(limiter, t, 5, model="b") == 2
    with pytest.raises(RateLimited, match="2 requests/minute for model a"):
        limiter.admit(1, t, "a", 1, 1)
    assert outcomes(limiter, t, 5, account=2, model="a") == 2  # per account


def test_tpm_reserves_then_refunds_unused_tokens(make_limiter):
    """A reservation of prompt + max_tokens blocks; settling at actual frees the rest."""
    clock = Clock()
    limiter = make_limiter(clock)
    t = tier(tpm=1000, max_request=1000)
    first = limiter.admit(1, t, "m", 100, 800)
    assert first.headers["x-ratelimit-remaining-tokens"] == "100"
    with pytest.raises(RateLimited, match="1000 tokens/minute"):
        limiter.admit(1, t, "m", 0, 200)
    clock.t += 2
    limiter.record_tokens(1, 150, first.tokens_reserved, reserved_at=first.reserved_at)
    second = limiter.admit(1, t, "m", 0, 200)
    assert second.headers["x-ratelimit-remaining-tokens"] == str(1000 - 150 - 200)
    assert limiter.usage(1, t)["tpm_used"] == 350


def test_max_tokens_per_request_is_413(make_limiter):
    limiter = make_limiter(Clock())
    with pytest.raises(PayloadTooLarge) as exc:
        limiter.admit(1, tier(max_request=1000), "m", 600, 500)
    assert exc.value.status == 413 and "1100 tokens" in exc.value.message
    assert limiter.usage(1, tier())["rpm_used"] == 0  # a refused request consumed nothing


def test_usage_reports_the_limits_fields(make_limiter):
    limiter = make_limiter(Clock())
    outcomes(limiter, tier(rpm=10), 3)
    usage = limiter.usage(1, tier(rpm=10))
    assert {k: usage[k] for k in ("rpm_limit", "rpm_used", "rpm_remaining", "tpm_used")} == {
        "rpm_limit": 10, "rpm_used": 3, "rpm_remaining": 7, "tpm_used": 60}
    assert usage["resets_at"].endswith("Z")


# ---- exactness across OS processes ----

def _hammer(backend: str, target: str, barrier, results, attempts: int) -> None:
    if backend == "redis":
        url, prefix = target.split("|")
        limiter = Limiter(RedisStore(url, prefix))
    else:
        init_db(target)
        limiter = Limiter(DatabaseStore())
    barrier.wait()
    results.put(outcomes(limiter, tier(rpm=10, per_model=10), attempts, account=7))


def _admitted_across_processes(backend: str, target: str, procs: int = 6, attempts: int = 10) -> int:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_hammer, args=(backend, target, barrier, results, attempts)) for _ in range(procs)]
    for w in workers:
        w.start()
    total = sum(results.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(10)
        assert w.exitcode == 0
    return total


def test_rpm_exact_across_processes_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'rl.db'}"
    init_db(url).create_tables(ALL_MODELS)
    assert _admitted_across_processes("db", url) == 10


def test_rpm_exact_across_processes_postgres():
    with postgres_schema() as url:
        assert _admitted_across_processes("db", url) == 10


def test_rpm_exact_across_processes_redis():
    with redis_prefix() as prefix:
        assert _admitted_across_processes("redis", f"{REDIS_URL}|{prefix}") == 10


def test_redis_store_semantics_match():
    with redis_prefix() as prefix:
        clock = Clock()
        limiter = Limiter(RedisStore(REDIS_URL, prefix), clock)
        assert outcomes(limiter, tier(rpm=3), 5) == 3
        with pytest.raises(RateLimited) as exc:
            limiter.admit(1, tier(rpm=3), "m", 1, 1)
        assert exc.value.headers["Retry-After"] == "60"
        clock.t += 60
        assert outcomes(limiter, tier(rpm=3), 5) == 3
        first = limiter.admit(2, tier(tpm=1000), "m", 100, 800)
        limiter.record_tokens(2, 100, first.tokens_reserved, reserved_at=first.reserved_at)
        assert limiter.usage(2, tier(tpm=1000))["tpm_used"] == 100


def test_redis_down_fails_open_per_process():
    limiter = Limiter(RedisStore("redis://127.0.0.1:1/0"), Clock())
    assert outcomes(limiter, tier(rpm=2), 4) == 2  # the in-process fallback still limits


def test_cancel_gives_back_slots_and_tokens(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    t = tier(rpm=2, per_model=2, tpm=1000, max_request=1000)
    admission = limiter.admit(1, t, "m", 100, 800)
    clock.t += 3
    limiter.cancel(admission)  # e.g. the hold was refused: 402, nothing ran
    assert limiter.usage(1, t)["rpm_used"] == 0 and limiter.usage(1, t)["tpm_used"] == 0
    assert outcomes(limiter, t, 3, prompt=100, max_tokens=300) == 2
