"""Fixed-window counters shared by every worker (login throttling), and sliding windows made of
them (sign-ups). This module owns the RateCounter table: it writes, reads and prunes it.

The database backend is exact across processes: one upsert adds to the window's row, and the
read that follows runs in the same short transaction. A Redis backend can implement the same
two methods; `backend()` is the one place that picks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from peewee import EXCLUDED, fn

from kyma.db import execute, write_transaction
from kyma.models import RateCounter


@dataclass(frozen=True)
class Count:
    """A window's count after (or without) a hit, and when that window ends (epoch seconds)."""

    count: int
    resets_at_epoch: int

    def retry_after(self, now: float | None = None) -> int:
        """Whole seconds until the window resets (at least 1)."""
        now = time.time() if now is None else now
        return max(1, int(self.resets_at_epoch - now + 0.999))


class Counters(Protocol):
    """What every counter backend offers."""

    def hit(self, key: str, window_seconds: int, amount: int = 1, *, now: float | None = None) -> Count: ...

    def peek(self, key: str, window_seconds: int, *, now: float | None = None) -> Count: ...

    def total(self, key: str, bucket_seconds: int, span_seconds: int, *, now: float | None = None) -> Count: ...


# The longest window a counter may use (sign-ups and failed log-ins per address: an hour); the
# reaper deletes windows that started twice this long ago (prune), so it never deletes a live one.
LONGEST_WINDOW_SECONDS = 3600
# An earlier rate limiter kept per-second buckets here under keys starting "rl:"; nothing counts
# them any more, so they go once they are this old.
RETIRED_PREFIX = "rl:"
RETIRED_AFTER_SECONDS = 120


def _window_start(window_seconds: int, now: float | None) -> int:
    if not 0 < window_seconds <= LONGEST_WINDOW_SECONDS:
        raise ValueError(f"a counter window must be 1 to {LONGEST_WINDOW_SECONDS} seconds, not {window_seconds}")
    now = time.time() if now is None else now
    return int(now) - int(now) % window_seconds


class DatabaseCounters:
    """Counters in the RateCounter table (SQLite or PostgreSQL)."""

    def hit(self, key: str, window_seconds: int, amount: int = 1, *, now: float | None = None) -> Count:
        """Add `amount` to the key's current window and return the new total."""
        window = _window_start(window_seconds, now)
        with write_transaction():
            (RateCounter.insert(key=key, window=window, count=amount)
             .on_conflict(conflict_target=[RateCounter.key, RateCounter.window],
                          update={RateCounter.count: RateCounter.count + EXCLUDED.count})
             .execute())
            # Our upsert holds the row (SQLite write lock / PostgreSQL row lock) until commit,
            # so this read sees exactly the total including our hit.
            count = _read(key, window)
        return Count(count, window + window_seconds)

    def peek(self, key: str, window_seconds: int, *, now: float | None = None) -> Count:
        """The key's count in the current window, without adding to it."""
        window = _window_start(window_seconds, now)
        return Count(_read(key, window), window + window_seconds)

    def total(self, key: str, bucket_seconds: int, span_seconds: int, *, now: float | None = None) -> Count:
        """A sliding window: the key's hits (counted with hit(key, bucket_seconds)) in the buckets of
        the last `span_seconds`; it resets when the oldest of them leaves the span."""
        if span_seconds > LONGEST_WINDOW_SECONDS:  # the reaper would prune buckets still in the span
            raise ValueError(f"a sliding window may span at most {LONGEST_WINDOW_SECONDS} seconds")
        current = _window_start(bucket_seconds, now)
        since = current + bucket_seconds - span_seconds
        count, oldest = (RateCounter.select(fn.COALESCE(fn.SUM(RateCounter.count), 0), fn.MIN(RateCounter.window))
                         .where((RateCounter.key == key) & (RateCounter.window >= since)).tuples().get())
        return Count(int(count), (oldest if oldest is not None else current) + span_seconds)


def _read(key: str, window: int) -> int:
    row = (RateCounter.select(RateCounter.count)
           .where((RateCounter.key == key) & (RateCounter.window == window))
           .scalar())
    return int(row or 0)


_PRUNE_SQL = ('DELETE FROM "ratecounter" WHERE "window" <= ? '
              # substr, not LIKE: SQLite's LIKE ignores case and would also match other counters' keys.
              f'AND (substr("key", 1, {len(RETIRED_PREFIX)}) = ? OR "window" <= ?)')


def prune(now: int) -> int:
    """Delete windows that can no longer count (`now` in epoch seconds); returns how many rows.

    The reaper calls it in a connection of its own.
    """
    return execute(_PRUNE_SQL, now - RETIRED_AFTER_SECONDS, RETIRED_PREFIX, now - 2 * LONGEST_WINDOW_SECONDS)


def backend(settings=None) -> Counters:
    """The counter backend for these settings (the database today; Redis can slot in here)."""
    return DatabaseCounters()


def hit(key: str, window_seconds: int, amount: int = 1, *, now: float | None = None) -> Count:
    """Add to a fixed-window counter on the default backend."""
    return backend().hit(key, window_seconds, amount, now=now)


def peek(key: str, window_seconds: int, *, now: float | None = None) -> Count:
    """Read a fixed-window counter on the default backend."""
    return backend().peek(key, window_seconds, now=now)
