"""Continuous-refill rate-limit stores (GCRA): database (default), Redis, in-process.

Each limit key holds one number, its theoretical arrival time (TAT, epoch microseconds): the moment
its allowance is full again. A limit of N units per minute charges a check of `cost` units
cost * 60 s / N of allowance (its `charge`), and admits it when max(TAT, now) + charge - now <= 60 s:
a burst of up to N units, then one more every 60/N s. `consume` tests every check and, only when all
fit, moves each TAT to max(TAT, now) + charge: all or nothing, so a rejected attempt consumes nothing.
It returns the TATs as they were (0 for a key never seen); the limiter derives remaining, reset and
Retry-After from them. `adjust` refunds or charges units later (cancel, actual tokens) at the rate
the key was last admitted with, which the store keeps next to the TAT.

Atomicity: SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL takes a per-account
transaction-scoped advisory lock; Redis runs one Lua script.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Protocol

from kyma.db import connected, execute, write_transaction
from kyma.outage import OutageWarning
from kyma.services.redis_pipeline import Pipeliner

log = logging.getLogger(__name__)

WINDOW = 60  # seconds; every limit here is "per minute"
WINDOW_US = WINDOW * 1_000_000  # the allowance of a full bucket, in microseconds


def scaled(units: int, per_minute: int) -> int:
    """Microseconds of allowance `units` stand for at `per_minute`, truncated toward zero as SQL divides."""
    if per_minute <= 0:
        return WINDOW_US + 1 if units > 0 else 0  # a zero limit admits nothing that costs
    q = abs(units) * WINDOW_US // per_minute
    return q if units >= 0 else -q


@dataclass(frozen=True)
class Check:
    """One limit to test and consume: `cost` units against `limit` units per minute on `key`."""

    key: str
    limit: int
    cost: int

    @property
    def charge(self) -> int:
        """The allowance, in microseconds, this check uses."""
        return scaled(self.cost, self.limit)


def advanced(tat: int, now: int, check: Check) -> int:
    """The key's TAT once `check` is admitted."""
    return max(tat, now) + check.charge


def fits(tat: int, now: int, check: Check) -> bool:
    """The admission rule every backend applies (Redis mirrors it in Lua)."""
    return advanced(tat, now, check) - now <= WINDOW_US


def _plan(checks: list[Check], tats: list[int], now: int) -> tuple[bool, dict[str, tuple[int, int]]]:
    """Whether every check fits, and each charged key's new (TAT, limit)."""
    ok = all(fits(t, now, c) for t, c in zip(tats, checks))
    return ok, {c.key: (advanced(t, now, c), max(1, c.limit)) for t, c in zip(tats, checks) if c.cost}


class RateStore(Protocol):
    """What every backend offers (times in epoch microseconds)."""

    def consume(self, lock_key: str, checks: list[Check], now: int) -> tuple[bool, list[int]]: ...

    def adjust(self, key: str, units: int, now: int) -> None: ...

    def peek(self, keys: list[str], now: int) -> list[int]: ...


class DatabaseStore:
    """TATs as RateState rows (key, tat, per_minute), on SQLite or PostgreSQL.

    The hot path is raw SQL whose text is built once per placeholder style and size: per admission
    one SELECT of the keys' rows and, when admitted, one multi-row upsert. Rows whose allowance has
    long been full are pruned by the reaper (prune_database_state).
    """

    def consume(self, lock_key: str, checks: list[Check], now: int) -> tuple[bool, list[int]]:
        """Check every limit and, when all fit, move their TATs; one transaction (or the caller's)."""
        keys = [c.key for c in checks]
        with connected() as db, write_transaction():
            lock = _lock_sql(db.param)
            if lock:
                # READ COMMITTED re-reads would race: serialise this account's admissions instead.
                db.execute_sql(lock, (lock_key,))
            tats = _read(db, keys)
            ok, rows = _plan(checks, tats, now)
            if ok and rows:
                db.execute_sql(_upsert_sql(db.param, len(rows)),
                               [v for key, (tat, limit) in rows.items() for v in (key, tat, limit)])
        return ok, tats

    def adjust(self, key: str, units: int, now: int) -> None:
        """Give back (negative) or charge `units` at the key's rate; a key with no row is already full."""
        if units:
            # connected(): a stream settles after teardown, where a lazily opened connection would leak.
            # One autocommitted statement is atomic by itself, and joins a caller's open transaction.
            with connected() as db:
                db.execute_sql(_adjust_sql(db.param), (now, units, key))

    def peek(self, keys: list[str], now: int) -> list[int]:
        """Each key's TAT (0 when it has none), without changing it."""
        with connected() as db:
            return _read(db, keys)


# State this long past its last use can no longer matter: a TAT that far behind the clock (with
# room for clocks that disagree) reads as a full allowance.
PRUNE_AFTER_SECONDS = 2 * WINDOW

# Statement text is built once per placeholder style (SQLite `?`, PostgreSQL `%s`) and size, so the
# hot path does no query building. "key" is quoted: it is reserved in some SQL dialects.


@functools.lru_cache(maxsize=32)
def _read_sql(param: str, n_keys: int) -> str:
    marks = ", ".join([param] * n_keys)
    return f'SELECT "key", "tat" FROM "ratestate" WHERE "key" IN ({marks})'


@functools.lru_cache(maxsize=32)
def _upsert_sql(param: str, n_rows: int) -> str:
    row = "(" + ", ".join([param] * 3) + ")"
    return ('INSERT INTO "ratestate" ("key", "tat", "per_minute") VALUES ' + ", ".join([row] * n_rows)
            + ' ON CONFLICT ("key") DO UPDATE SET "tat" = excluded."tat", "per_minute" = excluded."per_minute"')


@functools.lru_cache(maxsize=4)
def _adjust_sql(param: str) -> str:
    # Integer division truncates toward zero in both dialects, as scaled() does; CAST keeps
    # PostgreSQL from multiplying in a small integer type.
    latest = "MAX" if param == "?" else "GREATEST"
    return (f'UPDATE "ratestate" SET "tat" = {latest}("tat", CAST({param} AS BIGINT)) '
            f'+ CAST({param} AS BIGINT) * {WINDOW_US} / "per_minute" WHERE "key" = {param}')


def _lock_sql(param: str) -> str | None:
    return None if param == "?" else f"SELECT pg_advisory_xact_lock(hashtext({param}))"


def _read(db, keys: list[str]) -> list[int]:
    if not keys:  # "IN ()" is not SQL
        return []
    found = dict(db.execute_sql(_read_sql(db.param, len(keys)), keys))
    return [int(found.get(k) or 0) for k in keys]


_PRUNE_STATE_SQL = 'DELETE FROM "ratestate" WHERE "tat" <= ?'


def prune_database_state(now: int) -> int:
    """Delete rate-limit state whose allowance has long been full; returns how many rows.

    The reaper calls it in a connection of its own (`now` in epoch seconds).
    """
    return execute(_PRUNE_STATE_SQL, (now - PRUNE_AFTER_SECONDS) * 1_000_000)


class MemoryStore:
    """Per-process TATs: for unit tests and as the capped fallback when Redis is down."""

    def __init__(self):
        self._data: dict[str, tuple[int, int]] = {}  # key → (TAT, limit)
        self._lock = threading.Lock()

    def consume(self, lock_key: str, checks: list[Check], now: int) -> tuple[bool, list[int]]:
        """Check every limit and, when all fit, move their TATs."""
        with self._lock:
            tats = [self._data.get(c.key, (0, 0))[0] for c in checks]
            ok, rows = _plan(checks, tats, now)
            if ok:
                self._data.update(rows)
        return ok, tats

    def adjust(self, key: str, units: int, now: int) -> None:
        """Give back (negative) or charge `units` at the key's rate."""
        with self._lock:
            if units and key in self._data:
                tat, limit = self._data[key]
                self._data[key] = (max(tat, now) + scaled(units, limit), limit)

    def peek(self, keys: list[str], now: int) -> list[int]:
        """Each key's TAT (0 when it has none)."""
        with self._lock:
            return [self._data.get(k, (0, 0))[0] for k in keys]


# A key's hash: t = TAT (µs), n = limit per minute. It expires KEEP_MS after its allowance is full.
# Lua numbers are doubles: exact for integers below 2^53 (epoch µs are about 2^51); '%.0f' writes
# them without an exponent.
_KEEP_MS = PRUNE_AFTER_SECONDS * 1000

# KEYS = limit keys; ARGV = now, window, then charge and limit per key. Returns {ok, TAT before per key}.
_CONSUME_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local ok = 1
local out = {0}
local after = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('HGET', key, 't') or '0')
  out[i + 1] = tat
  after[i] = math.max(tat, now) + tonumber(ARGV[1 + 2 * i])
  if after[i] - now > window then ok = 0 end
end
if ok == 1 then
  for i, key in ipairs(KEYS) do
    if tonumber(ARGV[1 + 2 * i]) ~= 0 then
      redis.call('HSET', key, 't', string.format('%.0f', after[i]), 'n', ARGV[2 + 2 * i])
      redis.call('PEXPIRE', key, math.ceil((after[i] - now) / 1000) + KEEP)
    end
  end
end
out[1] = ok
return out
""".replace("KEEP", str(_KEEP_MS))

# KEYS[1] = limit key; ARGV = now, units (negative to give back). Truncates toward zero like scaled().
_ADJUST_LUA = """
local now = tonumber(ARGV[1])
local units = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 't', 'n')
local limit = tonumber(state[2] or '0')
if not state[1] or limit <= 0 then return 0 end
local q = math.floor(math.abs(units) * WINDOW_US / limit)
if units < 0 then q = -q end
local tat = math.max(tonumber(state[1]), now) + q
redis.call('HSET', KEYS[1], 't', string.format('%.0f', tat))
redis.call('PEXPIRE', KEYS[1], math.max(0, math.ceil((tat - now) / 1000)) + KEEP)
return 1
""".replace("WINDOW_US", str(WINDOW_US)).replace("KEEP", str(_KEEP_MS))


class RedisStore:
    """TATs as Redis hashes, consumed by one Lua script: exact across instances.

    If Redis is unreachable, rate limiting fails open to a per-process MemoryStore (limits
    protect the service, credits protect the money) and a warning is logged at most
    every 10 s.
    """

    def __init__(self, url: str, prefix: str = "kyma:"):
        import redis

        self._errors = redis.RedisError
        self._client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(
            url, socket_connect_timeout=1, socket_timeout=2, max_connections=200))
        self._consume = self._client.register_script(_CONSUME_LUA)
        self._adjust = self._client.register_script(_ADJUST_LUA)
        self._no_script = redis.exceptions.NoScriptError
        self._pipeliner = Pipeliner(self._client)
        self._prefix = prefix
        self._fallback = MemoryStore()
        self._warn = OutageWarning(
            log, "Redis rate-limit store unavailable (%s); limiting per process until it returns")

    @property
    def pipeliner(self) -> Pipeliner:
        """This worker's shared pipeline to the store's Redis (other per-request reads can join it)."""
        return self._pipeliner

    @property
    def prefix(self) -> str:
        """What every key this store writes starts with (one Redis can serve several gateways)."""
        return self._prefix

    def consume(self, lock_key: str, checks: list[Check], now: int) -> tuple[bool, list[int]]:
        """Check every limit and, when all fit, move their TATs; one Lua script."""
        args = [now, WINDOW_US]
        for c in checks:
            args += [c.charge, max(1, c.limit)]
        try:
            result = self._run(self._consume, [self._prefix + c.key for c in checks], args)
        except self._errors as exc:
            self._warn(exc)
            return self._fallback.consume(lock_key, checks, now)
        return bool(int(result[0])), [int(t) for t in result[1:]]

    def adjust(self, key: str, units: int, now: int) -> None:
        """Give back (negative) or charge `units` at the key's rate."""
        if not units:
            return
        try:
            self._run(self._adjust, [self._prefix + key], [now, units])
        except self._errors as exc:
            self._warn(exc)
            self._fallback.adjust(key, units, now)

    def _run(self, script, keys: list[str], args: list):
        """A script by its hash, in the worker's shared pipeline; loaded first if Redis has lost it."""
        # Not `script(..., client=pipe)`: a pipeline holding a Script object asks Redis whether its
        # scripts exist (SCRIPT EXISTS, a round trip of its own) before every send. The hash alone
        # costs nothing; on NOSCRIPT the Script object itself loads the script and runs it.
        try:
            return self._pipeliner.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._no_script:  # Redis restarted or flushed its scripts: this call loads it again
            return script(keys=keys, args=args)

    def peek(self, keys: list[str], now: int) -> list[int]:
        """Each key's TAT (0 when it has none)."""
        try:
            pipe = self._client.pipeline(transaction=False)
            for k in keys:
                pipe.hget(self._prefix + k, "t")
            raw = pipe.execute()
        except self._errors as exc:
            self._warn(exc)
            return self._fallback.peek(keys, now)
        return [int(t) if t is not None else 0 for t in raw]
