"""Tiered rate limits: continuous refill (GCRA), headers, refunds, and exactness across processes.

Every semantic test runs on each store (in-process, SQLite, PostgreSQL, Redis) with a fake clock.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from kyma.db import init_db
from kyma.errors import PayloadTooLarge, RateLimited
from kyma.models import ALL_MODELS, RateState
from kyma.services.ratelimit import Limiter, duration
from kyma.services.window_stores import DatabaseStore, RedisStore, prune_database_state
from tests.backends import REDIS_URL, postgres_schema, redis_prefix
from tests.racers import START, Clock, hammer, outcomes, race_context, tier

EPOCH_NOW = 1_765_000_000.123456  # a real-looking epoch: microseconds need 51 bits


def refusal(limiter, t, model="m", prompt=10, max_tokens=10, account=1) -> RateLimited:
    with pytest.raises(RateLimited) as exc:
        limiter.admit(account, t, model, prompt, max_tokens)
    return exc.value


STORES = ["memory", "sqlite", "postgres", "redis"]


@pytest.fixture(params=STORES)
def make_limiter(request, tmp_path):
    """make(clock) → a Limiter on the parametrised store (PostgreSQL and Redis skip when down)."""
    if request.param == "memory":
        yield Limiter.in_memory
    elif request.param == "sqlite":
        init_db(f"sqlite:///{tmp_path / 'rl.db'}").create_tables(ALL_MODELS)
        yield lambda clock: Limiter(DatabaseStore(), clock)
    elif request.param == "postgres":
        with postgres_schema():
            yield lambda clock: Limiter(DatabaseStore(), clock)
    else:
        with redis_prefix() as prefix:
            yield lambda clock: Limiter(RedisStore(REDIS_URL, prefix), clock)


# ---- requests per minute ----

def test_a_burst_of_rpm_is_admitted_then_one_every_60_over_rpm_seconds(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    t = tier(rpm=5, per_model=10)
    first = limiter.admit(1, t, "m", 10, 10)
    assert first.headers["x-ratelimit-limit-requests"] == "5"
    assert first.headers["x-ratelimit-remaining-requests"] == "4"
    assert first.headers["x-ratelimit-reset-requests"] == "12s"  # one request refills in 60/5 s
    assert first.headers["x-ratelimit-scope"] == "account"
    assert outcomes(limiter, t, 4) == 4
    err = refusal(limiter, t)
    assert err.status == 429 and err.type == "rate_limit"
    assert err.message == "Rate limit exceeded (5 requests/minute). Try again in 12 seconds."
    assert (err.headers["Retry-After"], err.headers["retry-after-ms"]) == ("12", "12000")
    assert err.headers["x-ratelimit-scope"] == "account"
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.headers["x-ratelimit-reset-requests"] == "1m0s"
    clock.t += 11.999999  # a microsecond early: still refused, and told so
    early = refusal(limiter, t)
    assert (early.headers["Retry-After"], early.headers["retry-after-ms"]) == ("1", "1")
    clock.t = START + 12
    assert outcomes(limiter, t, 2) == 1  # exactly one slot came back
    for _ in range(3):  # sustained: one more every 12 s, not a moment before
        clock.t += 11.9
        assert outcomes(limiter, t, 1) == 0
        clock.t += 0.1
        assert outcomes(limiter, t, 2) == 1


def test_retry_after_rounds_a_fractional_interval_up(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    t = tier(rpm=25, per_model=25)  # a slot every 2.4 s
    assert outcomes(limiter, t, 30) == 25
    err = refusal(limiter, t)
    assert (err.headers["Retry-After"], err.headers["retry-after-ms"]) == ("3", "2400")
    clock.t += 2.399999
    assert outcomes(limiter, t, 1) == 0
    clock.t = START + 2.4
    assert outcomes(limiter, t, 2) == 1


def test_no_burst_across_a_window_edge(make_limiter):
    """10 at t=59 s, then none at 61 s: the allowance refills one request per 6 s, not per clock minute."""
    clock = Clock(START + 59)
    limiter = make_limiter(clock)
    assert outcomes(limiter, tier(rpm=10), 10) == 10
    clock.t = START + 61
    assert outcomes(limiter, tier(rpm=10), 10) == 0
    clock.t = START + 65
    assert outcomes(limiter, tier(rpm=10), 10) == 1
    clock.t = START + 65 + 60  # idle for a minute: the full burst again
    assert outcomes(limiter, tier(rpm=10), 20) == 10


def test_rejected_attempts_do_not_consume(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    assert outcomes(limiter, tier(rpm=3), 50) == 3
    clock.t += 20
    assert outcomes(limiter, tier(rpm=3), 5) == 1  # 60/3 s later: one slot, however many were refused
    clock.t += 60
    assert outcomes(limiter, tier(rpm=3), 5) == 3


# ---- per model ----

def test_per_model_limit_names_the_model_and_its_scope(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    t = tier(rpm=10, per_model=2)
    first = limiter.admit(1, t, "a", 1, 1)
    assert first.headers["x-ratelimit-scope"] == "model"  # the tighter requests limit decides the headers
    assert (first.headers["x-ratelimit-limit-requests"], first.headers["x-ratelimit-remaining-requests"]) == ("2", "1")
    assert outcomes(limiter, t, 5, model="a") == 1
    assert outcomes(limiter, t, 5, model="b") == 2
    err = refusal(limiter, t, model="a")
    assert err.message == "Rate limit exceeded (2 requests/minute for model a). Try again in 30 seconds."
    assert err.headers["x-ratelimit-scope"] == "model"
    assert (err.headers["x-ratelimit-limit-requests"], err.headers["x-ratelimit-remaining-requests"]) == ("2", "0")
    assert (err.headers["Retry-After"], err.headers["retry-after-ms"]) == ("30", "30000")
    assert outcomes(limiter, t, 5, account=2, model="a") == 2  # per account
    clock.t += 29.999
    assert outcomes(limiter, t, 1, model="a") == 0
    clock.t = START + 30
    assert outcomes(limiter, t, 2, model="a") == 1


def test_the_account_limit_refuses_with_its_own_scope(make_limiter):
    limiter = make_limiter(Clock())
    t = tier(rpm=3, per_model=10)
    assert outcomes(limiter, t, 2, model="a") + outcomes(limiter, t, 2, model="b") == 3
    err = refusal(limiter, t, model="c")
    assert err.headers["x-ratelimit-scope"] == "account"
    assert err.headers["x-ratelimit-limit-requests"] == "3"
    assert err.headers["Retry-After"] == "20"


# ---- tokens per minute ----

def test_tpm_refuses_with_the_time_the_reservation_needs(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    t = tier(tpm=1000, max_request=1000)  # a token every 60 ms
    first = limiter.admit(1, t, "m", 100, 800)
    assert first.headers["x-ratelimit-remaining-tokens"] == "100"
    assert first.headers["x-ratelimit-reset-tokens"] == "54s"
    err = refusal(limiter, t, prompt=0, max_tokens=200)
    assert err.message.startswith("Rate limit exceeded (1000 tokens/minute; this request reserves 200)")
    assert err.headers["x-ratelimit-scope"] == "tokens"
    assert (err.headers["Retry-After"], err.headers["retry-after-ms"]) == ("6", "6000")  # 100 more tokens
    assert err.headers["x-ratelimit-remaining-tokens"] == "100"
    clock.t += 5.999
    assert outcomes(limiter, t, 1, prompt=0, max_tokens=200) == 0
    clock.t = START + 6
    assert outcomes(limiter, t, 2, prompt=0, max_tokens=200) == 1


def test_record_tokens_refunds_unused_tokens(make_limiter):
    """A reservation of prompt + max_tokens blocks; settling at actual frees the rest at once."""
    limiter = make_limiter(Clock())
    t = tier(tpm=1000, max_request=1000)
    first = limiter.admit(1, t, "m", 100, 800)
    assert outcomes(limiter, t, 1, prompt=0, max_tokens=200) == 0
    limiter.record_tokens(1, 150, first.tokens_reserved, reserved_at=first.reserved_at)
    second = limiter.admit(1, t, "m", 0, 200)
    assert second.headers["x-ratelimit-remaining-tokens"] == str(1000 - 150 - 200)
    assert limiter.usage(1, t)["tpm_used"] == 350


def test_record_tokens_charges_tokens_beyond_the_reservation(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    t = tier(tpm=1000, max_request=1000)
    first = limiter.admit(1, t, "m", 50, 50)
    limiter.record_tokens(1, 400, first.tokens_reserved)
    assert limiter.usage(1, t)["tpm_used"] == 400
    clock.t += 60  # the charge drains like any other: a minute later all is back
    assert limiter.usage(1, t)["tpm_used"] == 0


def test_a_refund_never_lends_more_than_a_full_allowance(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    t = tier(rpm=2, per_model=2, tpm=1000, max_request=1000)
    admission = limiter.admit(1, t, "m", 100, 800)
    clock.t += 120  # everything has refilled
    limiter.cancel(admission)
    assert outcomes(limiter, t, 5, prompt=1, max_tokens=1) == 2


def test_max_tokens_per_request_is_413(make_limiter):
    limiter = make_limiter(Clock())
    with pytest.raises(PayloadTooLarge) as exc:
        limiter.admit(1, tier(max_request=1000), "m", 600, 500)
    assert exc.value.status == 413 and "1100 tokens" in exc.value.message
    assert limiter.usage(1, tier())["rpm_used"] == 0  # a refused request consumed nothing


def test_usage_reports_the_limits_fields(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    outcomes(limiter, tier(rpm=10), 3)
    usage = limiter.usage(1, tier(rpm=10))
    assert {k: usage[k] for k in ("rpm_limit", "rpm_used", "rpm_remaining", "tpm_used", "tpm_remaining")} == {
        "rpm_limit": 10, "rpm_used": 3, "rpm_remaining": 7, "tpm_used": 60, "tpm_remaining": 100_000 - 60}
    # Full again once three requests' worth (3 × 6 s) has refilled.
    assert usage["resets_at"] == datetime.fromtimestamp(START + 18, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    clock.t += 6
    assert limiter.usage(1, tier(rpm=10))["rpm_used"] == 2
    clock.t += 12
    usage = limiter.usage(1, tier(rpm=10))
    assert (usage["rpm_used"], usage["tpm_used"]) == (0, 0)
    assert usage["resets_at"] == datetime.fromtimestamp(START + 18, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_cancel_gives_back_slots_and_tokens(make_limiter):
    clock = Clock()
    limiter = make_limiter(clock)
    t = tier(rpm=2, per_model=2, tpm=1000, max_request=1000)
    admission = limiter.admit(1, t, "m", 100, 800)
    clock.t += 3
    limiter.cancel(admission)  # e.g. the hold was refused: 402, nothing ran
    assert limiter.usage(1, t)["rpm_used"] == 0 and limiter.usage(1, t)["tpm_used"] == 0
    assert outcomes(limiter, t, 3, prompt=100, max_tokens=300) == 2


def _script(limiter, clock) -> list:
    """Admissions, refusals, refunds and waits; what each step answered."""
    t = tier(rpm=7, per_model=3, tpm=5000, max_request=5000)  # 7 rpm: an interval that does not divide
    trace = []

    def step(model, prompt, max_tokens):
        try:
            a = limiter.admit(1, t, model, prompt, max_tokens)
            trace.append(("ok", a.headers))
            return a
        except RateLimited as err:
            trace.append(("429", err.headers, err.message))
            return None

    admitted = [step(m, 100, 900) for m in "aabab"]
    limiter.record_tokens(1, 300, 1000)
    limiter.cancel(next(a for a in admitted if a))
    for dt in (0.5, 2.75, 8.571428, 20, 0.000001):
        clock.t += dt
        step("a", 10, 1500)
        step("c", 0, 10)
    trace.append(limiter.usage(1, t))
    return trace


def test_every_store_answers_like_the_in_process_one(make_limiter):
    """The same script at a real-looking epoch: every header, Retry-After and usage field agrees."""
    clock = Clock(EPOCH_NOW)
    reference_clock = Clock(EPOCH_NOW)
    expected = _script(Limiter.in_memory(reference_clock), reference_clock)
    assert _script(make_limiter(clock), clock) == expected
    assert any(step[0] == "429" for step in expected[:-1]) and any(step[0] == "ok" for step in expected[:-1])


def test_durations_are_written_as_openai_writes_them():
    assert [duration(us) for us in (-5, 0, 1, 250_000, 999_999, 1_000_000, 1_200_000, 6_000_000, 60_000_000,
                                    90_500_000)] == ["0s", "0s", "1ms", "250ms", "1s", "1s", "1.2s", "6s", "1m0s",
                                                     "1m30.5s"]


# ---- the database store ----

def test_a_database_admission_is_one_read_and_one_write(sqlite_db, monkeypatch):
    statements = []
    real = sqlite_db.execute_sql
    monkeypatch.setattr(sqlite_db, "execute_sql", lambda sql, *a, **k: statements.append(sql) or real(sql, *a, **k))
    limiter = Limiter(DatabaseStore(), Clock())
    limiter.admit(1, tier(rpm=1), "m", 1, 1)
    assert [s.split()[0] for s in statements] == ["SELECT", "INSERT"]
    statements.clear()
    outcomes(limiter, tier(rpm=1), 1)
    assert [s.split()[0] for s in statements] == ["SELECT"]  # a refusal writes nothing


def _prune_round(clock_now: int) -> None:
    limiter = Limiter(DatabaseStore(), Clock(clock_now - 1000))
    limiter.admit(1, tier(), "old", 1, 1)  # full again long ago
    limiter = Limiter(DatabaseStore(), Clock(clock_now))
    limiter.admit(2, tier(), "new", 1, 1)
    assert prune_database_state(clock_now) == 3
    assert {r.key for r in RateState.select()} == {"rl:2:rpm", "rl:2:m:new", "rl:2:tpm"}


def test_the_reaper_prunes_state_whose_allowance_has_long_been_full(backend_db):
    _prune_round(2_000_000)


def test_init_db_adds_the_state_table_to_an_older_database(tmp_path):
    from kyma.cli import create_or_migrate_schema

    db = init_db(f"sqlite:///{tmp_path / 'old.db'}")
    db.create_tables([m for m in ALL_MODELS if m is not RateState])
    assert "created table ratestate" in create_or_migrate_schema()
    assert "ratestate" in db.get_tables()
    assert create_or_migrate_schema() == []


# ---- exactness across OS processes ----

def _admitted_across_processes(backend: str, target: str, procs: int = 6, attempts: int = 10) -> int:
    ctx = race_context()
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=hammer, args=(backend, target, barrier, results, attempts)) for _ in range(procs)]
    for w in workers:
        w.start()
    total = sum(results.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(10)
        assert w.exitcode == 0
    return total


def test_rpm_exact_across_processes_on_the_database(backend_db):
    assert _admitted_across_processes("db", backend_db) == 10


def test_rpm_exact_across_processes_redis():
    with redis_prefix() as prefix:
        assert _admitted_across_processes("redis", f"{REDIS_URL}|{prefix}") == 10


def test_redis_keys_expire_once_their_allowance_is_long_full():
    import redis

    with redis_prefix() as prefix:
        Limiter(RedisStore(REDIS_URL, prefix), Clock()).admit(1, tier(rpm=10), "m", 1, 1)
        ttl = redis.Redis.from_url(REDIS_URL).pttl(f"{prefix}rl:1:rpm")
        assert 6_000 < ttl <= 6_000 + 120_000  # full again in 6 s, kept two minutes more


def test_redis_down_fails_open_per_process():
    limiter = Limiter(RedisStore("redis://127.0.0.1:1/0"), Clock())
    assert outcomes(limiter, tier(rpm=2), 4) == 2  # the in-process fallback still limits
