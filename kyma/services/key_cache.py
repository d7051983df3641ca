"""Each worker's copy of the API-key rows it has looked up, valid while no key or account has changed.

Every request authenticates its key; on PostgreSQL the lookup is a network round trip and a server
query. With Redis, a worker keeps the rows it read, tagged with a generation number that Redis
holds for all instances: every change that can refuse a key or change what it may do (revocation,
limits, suspension, tier, account deletion) increments it after its commit. The models announce
those changes themselves (models.KeptRow), whichever code path writes them. A request reads the
generation, in the pipeline its worker sends to Redis anyway, and uses a kept row only when it was
read under that same generation; otherwise it reads the database, as without the cache. So a key
revoked on any instance is refused by the next request on every instance.

The generation is read before the row: a row read while a change commits is tagged with the older
number and is not used once the change has counted. If Redis cannot be reached, or holds no generation
yet (a first one, random, is then set), the database is read
every time. A row is also kept no longer than TTL_SECONDS, which bounds what a change that could
not reach Redis leaves behind. Without Redis (one instance, SQLite) nothing is kept.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

from kyma.models import on_kept_row_change
from kyma.outage import OutageWarning

log = logging.getLogger(__name__)

TTL_SECONDS = 10.0
MAX_ENTRIES = 10_000  # a worker's distinct keys; past this the copy starts over


@dataclass
class _Entry:
    row: Any
    generation: bytes
    until: float


class KeyCache:
    """The rows, and where the generation lives."""

    def __init__(self, pipeliner, key: str, errors: tuple[type[BaseException], ...],
                 clock: Callable[[], float] = time.monotonic):
        self.pipeliner = pipeliner
        self.key = key
        self.errors = errors
        self.clock = clock
        self.entries: dict[str, _Entry] = {}
        # Once per outage, not once per request: every request reads the generation.
        self._warn = OutageWarning(log, "auth cache: Redis unavailable (%s); reading keys from the database")

    def generation(self) -> bytes | None:
        """The current generation, or None when Redis does not answer or holds none yet."""
        try:
            value = self.pipeliner.execute("GET", self.key)
        except self.errors as exc:
            self._warn(exc)
            return None
        if value is None:
            self._start()
        return value

    def _start(self) -> None:
        """Give the generation a random first value. A Redis that restarts empty (or evicts the key) must
        not bring back a number that rows read before a change are still tagged with."""
        try:
            self.pipeliner.client.execute_command("SET", self.key, _first_value(), "NX")
        except self.errors as exc:
            self._warn(exc)

    def fetch(self, hashed: str, load: Callable[[], Any]) -> Any:
        """The row for this key hash: the kept one if still valid, else `load()` (kept when found)."""
        generation = self.generation()
        if generation is None:
            return load()
        entry = self.entries.get(hashed)
        now = self.clock()
        if entry is not None and entry.generation == generation and now < entry.until:
            return entry.row
        row = load()
        if row is not None:
            if len(self.entries) >= MAX_ENTRIES:
                self.entries.clear()
            self.entries[hashed] = _Entry(row, generation, now + TTL_SECONDS)
        return row

    def replace(self, hashed: str, row: Any) -> None:
        """Keep `row` in place of the kept one (same generation): a change this worker made to it."""
        entry = self.entries.get(hashed)
        if entry is not None:
            entry.row = row

    def changed(self) -> None:
        """Call after committing a change to keys or accounts: every instance's kept rows stop counting."""
        self.entries.clear()
        try:
            # INCR of a missing key gives 1, which rows read before an earlier restart may carry: the
            # random first value goes in the same MULTI/EXEC, so no restart can fall between them.
            with self.pipeliner.client.pipeline(transaction=True) as pipe:
                pipe.set(self.key, _first_value(), nx=True).incr(self.key).execute()
        except self.errors as exc:
            log.error("auth cache: could not announce a key change (%s); other workers may accept it "
                      "for up to %.0f s", exc, TTL_SECONDS)


_cache: KeyCache | None = None


def _first_value() -> int:
    """A generation's first value: random, so that one begun again after a restart repeats no old number."""
    return secrets.randbits(62)


def configure(pipeliner, prefix: str = "") -> None:
    """Keep key rows when the gateway has Redis (the rate limiter's pipeline: its round trips are shared);
    with None every lookup reads the database."""
    global _cache
    if pipeliner is None:
        _cache = None
        return
    import redis

    _cache = KeyCache(pipeliner, f"{prefix}auth:generation", (redis.RedisError,))


def fetch(hashed: str, load: Callable[[], Any]) -> Any:
    """The row for this key hash (see KeyCache.fetch); `load()` itself when nothing is kept."""
    return load() if _cache is None else _cache.fetch(hashed, load)


def replace(hashed: str, row: Any) -> None:
    """See KeyCache.replace."""
    if _cache is not None:
        _cache.replace(hashed, row)


def changed() -> None:
    """See KeyCache.changed."""
    if _cache is not None:
        _cache.changed()


on_kept_row_change(changed)
