"""Sliding-window counter stores for the rate limiter: database (default), Redis, in-process.

Each limit key holds per-second buckets of counts. `consume` atomically sums a key's buckets of
the last WINDOW seconds for every check, and only when every check fits (sum + cost <= limit)
adds the costs to the current second's bucket: all or nothing, so a rejected attempt consumes
nothing. It returns the live buckets as they were before the hit; the limiter derives remaining,
reset and Retry-After from them.

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
from kyma.services.counters import LONGEST_WINDOW_SECONDS

log = logging.getLogger(__name__)

WINDOW = 60  # seconds; every limit here is "per minute"

Buckets = dict[int, int]  # second → count


@dataclass(frozen=True)
class Check:
    """One limit to test and consume: `cost` units against `limit` per WINDOW on `key`."""

    key: str
    limit: int
    cost: int


class WindowStore(Protocol):
    """What every backend offers."""

    def consume(self, lock_key: str, checks: list[Check], now: int) -> tuple[bool, list[Buckets]]: ...

    def adjust(self, key: str, bucket: int, delta: int, now: int) -> None: ...

    def peek(self, keys: list[str], now: int) -> list[Buckets]: ...


def fits(buckets: Buckets, check: Check) -> bool:
    """The admission rule every backend applies (Redis mirrors it in Lua)."""
    return sum(buckets.values()) + check.cost <= check.limit


class DatabaseStore:
    """Buckets as RateCounter rows (key, window=second, count), on SQLite or PostgreSQL.

    The hot path is raw SQL whose text is built once per placeholder style and size: per
    admission one SELECT for every key and one multi-row upsert, with no DELETE; buckets older
    than the window are ignored by the read and pruned by the reaper (prune_database_counters).
    """

    def consume(self, lock_key: str, checks: list[Check], now: int) -> tuple[bool, list[Buckets]]:
        """Check every limit and, when all fit, add the costs; one transaction (or the caller's)."""
        keys = [c.key for c in checks]
        with connected() as db, write_transaction():
            lock = _lock_sql(db.param)
            if lock:
                # READ COMMITTED re-reads would race: serialise this account's admissions instead.
                db.execute_sql(lock, (lock_key,))
            seen = _read_totals(db, keys, now)
            ok = all(fits(b, c) for b, c in zip(seen, checks))
            if not ok:
                seen = _read(db, keys, now)  # per-second detail only for a refusal's Retry-After
            else:
                costs: dict[str, int] = {}
                for c in checks:  # one row per key: PostgreSQL refuses to upsert a row twice per statement
                    costs[c.key] = costs.get(c.key, 0) + c.cost
                _add(db, [(k, now, v) for k, v in costs.items() if v])
        return ok, seen

    def adjust(self, key: str, bucket: int, delta: int, now: int) -> None:
        """Add `delta` (negative to refund) to a bucket still inside the window."""
        if delta and bucket > now - WINDOW:
            # connected(): a stream settles after teardown, where a lazily opened connection would leak.
            # One autocommitted statement is atomic by itself, and joins a caller's open transaction.
            with connected() as db:
                _add(db, [(key, bucket, delta)])

    def peek(self, keys: list[str], now: int) -> list[Buckets]:
        """The live buckets of each key, without changing them."""
        with connected() as db:
            return _read(db, keys, now)


# Every rate-limit key starts with this (kyma.services.ratelimit._keys); login counters do not.
RATE_KEY_PREFIX = "rl:"
# The reaper deletes buckets at least this old: twice the window, so no live bucket is ever lost.
PRUNE_AFTER_SECONDS = 2 * WINDOW

# Statement text is built once per placeholder style (SQLite `?`, PostgreSQL `%s`) and size, so the
# hot path does no query building. "key", "window" and "count" are quoted: WINDOW is reserved in PostgreSQL.


@functools.lru_cache(maxsize=32)
def _read_sql(param: str, n_keys: int) -> str:
    # (key, window) is unique, so each row is one bucket: no GROUP BY needed.
    marks = ", ".join([param] * n_keys)
    return f'SELECT "key", "window", "count" FROM "ratecounter" WHERE "key" IN ({marks}) AND "window" > {param}'


@functools.lru_cache(maxsize=32)
def _upsert_sql(param: str, n_rows: int) -> str:
    row = "(" + ", ".join([param] * 3) + ")"
    return ('INSERT INTO "ratecounter" ("key", "window", "count") VALUES ' + ", ".join([row] * n_rows)
            + ' ON CONFLICT ("key", "window") DO UPDATE SET "count" = "ratecounter"."count" + excluded."count"')


def _lock_sql(param: str) -> str | None:
    return None if param == "?" else f"SELECT pg_advisory_xact_lock(hashtext({param}))"


@functools.lru_cache(maxsize=32)
def _totals_sql(param: str, n_keys: int) -> str:
    # Admission needs only each key's total and its oldest counted second (for the reset header).
    marks = ", ".join([param] * n_keys)
    return (f'SELECT "key", MIN(CASE WHEN "count" != 0 THEN "window" END), SUM("count") FROM "ratecounter" '
            f'WHERE "key" IN ({marks}) AND "window" > {param} GROUP BY "key"')


def _read_totals(db, keys: list[str], now: int) -> list[Buckets]:
    """Each key's live count as one pseudo-bucket at its oldest second: 3 rows, not up to 180."""
    found: dict[str, Buckets] = {k: {} for k in keys}
    for key, oldest, total in db.execute_sql(_totals_sql(db.param, len(keys)), (*keys, now - WINDOW)):
        if total:
            found[key][int(oldest if oldest is not None else now)] = int(total)
    return [found[k] for k in keys]


def _read(db, keys: list[str], now: int) -> list[Buckets]:
    if not keys:  # "IN ()" is not SQL
        return []
    found: dict[str, Buckets] = {k: {} for k in keys}
    for key, window, count in db.execute_sql(_read_sql(db.param, len(keys)), (*keys, now - WINDOW)):
        found[key][int(window)] = int(count)
    return [found[k] for k in keys]


def _add(db, rows: list[tuple[str, int, int]]) -> None:
    if rows:
        db.execute_sql(_upsert_sql(db.param, len(rows)), [v for row in rows for v in row])


# The table's other rows are kyma.services.counters' windows (sign-ups, failed log-ins), which
# last up to counters.LONGEST_WINDOW_SECONDS: they go once two of those have passed.
_PRUNE_SQL = ('DELETE FROM "ratecounter" WHERE "window" <= ? '
              # substr, not LIKE: SQLite's LIKE ignores case and would also match other counters' keys.
              f'AND (substr("key", 1, {len(RATE_KEY_PREFIX)}) = ? OR "window" <= ?)')


def prune_database_counters(now: int) -> int:
    """Delete rate-limit buckets and counter windows that can no longer count; returns how many.

    The reaper calls it in a connection of its own.
    """
    return execute(_PRUNE_SQL, now - PRUNE_AFTER_SECONDS, RATE_KEY_PREFIX, now - 2 * LONGEST_WINDOW_SECONDS)


class MemoryStore:
    """Per-process buckets: for unit tests and as the capped fallback when Redis is down."""

    def __init__(self):
        self._data: dict[str, Buckets] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: int) -> Buckets:
        buckets = self._data.setdefault(key, {})
        for b in [b for b in buckets if b <= now - WINDOW]:
            del buckets[b]
        return buckets

    def consume(self, lock_key: str, checks: list[Check], now: int) -> tuple[bool, list[Buckets]]:
        """Check every limit and, when all fit, add the costs."""
        with self._lock:
            seen = [dict(self._live(c.key, now)) for c in checks]
            ok = all(fits(b, c) for b, c in zip(seen, checks))
            if ok:
                for c in checks:
                    live = self._live(c.key, now)
                    live[now] = live.get(now, 0) + c.cost
        return ok, seen

    def adjust(self, key: str, bucket: int, delta: int, now: int) -> None:
        """Add `delta` to a bucket still inside the window."""
        with self._lock:
            if delta and bucket > now - WINDOW:
                live = self._live(key, now)
                live[bucket] = live.get(bucket, 0) + delta

    def peek(self, keys: list[str], now: int) -> list[Buckets]:
        """The live buckets of each key."""
        with self._lock:
            return [dict(self._live(k, now)) for k in keys]


# KEYS = limit hashes; ARGV = now, window, then limit/cost per key. Returns {ok, {b1,c1,b2,c2…} per key}.
_CONSUME_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local ok = 1
local out = {0}
for i, key in ipairs(KEYS) do
  local flat = redis.call('HGETALL', key)
  local live = {}
  local sum = 0
  for j = 1, #flat, 2 do
    local b = tonumber(flat[j])
    if b <= now - window then
      redis.call('HDEL', key, flat[j])
    else
      sum = sum + tonumber(flat[j + 1])
      live[#live + 1] = flat[j]
      live[#live + 1] = flat[j + 1]
    end
  end
  if sum + tonumber(ARGV[2 + 2 * i]) > tonumber(ARGV[1 + 2 * i]) then ok = 0 end
  out[i + 1] = live
end
if ok == 1 then
  for i, key in ipairs(KEYS) do
    local cost = tonumber(ARGV[2 + 2 * i])
    if cost ~= 0 then
      redis.call('HINCRBY', key, now, cost)
      redis.call('EXPIRE', key, window * 2)
    end
  end
end
out[1] = ok
return out
"""


class RedisStore:
    """Buckets as Redis hashes (field = second), consumed by one Lua script: exact across instances.

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
        self._prefix = prefix
        self._fallback = MemoryStore()
        self._warn = OutageWarning(
            log, "Redis rate-limit store unavailable (%s); limiting per process until it returns")

    def consume(self, lock_key: str, checks: list[Check], now: int) -> tuple[bool, list[Buckets]]:
        """Check every limit and, when all fit, add the costs; one Lua script."""
        args = [now, WINDOW]
        for c in checks:
            args += [c.limit, c.cost]
        try:
            result = self._consume(keys=[self._prefix + c.key for c in checks], args=args)
        except self._errors as exc:
            self._warn(exc)
            return self._fallback.consume(lock_key, checks, now)
        return bool(int(result[0])), [_pairs(flat) for flat in result[1:]]

    def adjust(self, key: str, bucket: int, delta: int, now: int) -> None:
        """Add `delta` to a bucket still inside the window."""
        if not delta or bucket <= now - WINDOW:
            return
        try:
            self._client.hincrby(self._prefix + key, bucket, delta)
        except self._errors as exc:
            self._warn(exc)
            self._fallback.adjust(key, bucket, delta, now)

    def peek(self, keys: list[str], now: int) -> list[Buckets]:
        """The live buckets of each key."""
        try:
            pipe = self._client.pipeline(transaction=False)
            for k in keys:
                pipe.hgetall(self._prefix + k)
            raw = pipe.execute()
        except self._errors as exc:
            self._warn(exc)
            return self._fallback.peek(keys, now)
        return [{int(b): int(c) for b, c in h.items() if int(b) > now - WINDOW} for h in raw]


def _pairs(flat: list) -> Buckets:
    return {int(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
