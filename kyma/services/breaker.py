"""A circuit breaker per provider route (closed → open → half-open), its state shared by all workers.

State lives in the database (RouteState) by default, or in Redis when KYMA_REDIS_URL is set, so
every worker and every gateway instance skips the same failing routes.

An operator may also hold a circuit open, or disable a route, by hand (the admin console): that
flag sits in the same stored state the breaker reads on every attempt, so it costs nothing more,
and it stays until taken off by hand (no half-open probing, no expiry).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from kyma.db import as_datetime, connected, is_sqlite_db, query, write_transaction
from kyma.errors import KymaError
from kyma.models import RouteState, utcnow
from kyma.outage import OutageWarning
from kyma.services.redis_pipeline import Pipeliner

log = logging.getLogger(__name__)
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
HELD_OPEN, DISABLED = "open", "disabled"  # the manual flags; "" leaves the route to the breaker
HELD = "held_open"  # the state in effect of a circuit held open by hand
STATES_IN_EFFECT = (CLOSED, OPEN, HALF_OPEN, HELD, DISABLED)
MAX_RETRY_AFTER_HONOURED = 60.0  # a longer upstream Retry-After just keeps the route open that long


@dataclass(frozen=True)
class Verdict:
    """Whether a route may be tried now, and whether a success must reset stored state."""

    allowed: bool
    dirty: bool = False  # True when stored state is not a clean "closed, 0 failures"
    retry_at: float | None = None  # epoch seconds when an open route may be probed
    failures: int = 0  # consecutive failures recorded so far


@dataclass(frozen=True)
class BreakerState:
    state: str
    failures: int
    opened_until: float | None  # epoch seconds
    manual: str = ""  # "" automatic, HELD_OPEN or DISABLED by an operator
    updated_at: float | None = None  # epoch seconds of the last change: since when it is in this state

    def cooled(self, now: float) -> bool:
        """Open with its cooldown over: half-open in effect, the next request being the probe."""
        return self.state == OPEN and self.opened_until is not None and now >= self.opened_until

    def in_effect(self, now: float) -> str:
        """One of STATES_IN_EFFECT: an operator's switch first, then open past its cooldown as half-open."""
        if self.manual == DISABLED:
            return DISABLED
        if self.manual == HELD_OPEN:
            return HELD
        return HALF_OPEN if self.cooled(now) else self.state


class CircuitBreaker:
    """Decides whether a route may be tried and records the outcome of each attempt."""

    def __init__(self, store, *, failures: int = 5, cooldown: float = 2.0, max_cooldown: float = 4.0):
        self.store = store
        self.threshold = max(1, failures)
        self.cooldown = cooldown
        self.max_cooldown = max(cooldown, max_cooldown)

    @classmethod
    def create(cls, settings) -> "CircuitBreaker":
        """A breaker on Redis when configured, else on the database."""
        store = (RedisBreakerStore(settings.redis_url, settings.redis_prefix + "breaker:") if settings.redis_url
                 else DatabaseBreakerStore())
        return cls(store, failures=settings.breaker_failures, cooldown=settings.breaker_cooldown_seconds,
                   max_cooldown=settings.breaker_max_cooldown_seconds)

    def check(self, route: str, now: float | None = None) -> Verdict:
        """May `route` be tried now? An open route whose cooldown passed admits one probe."""
        now = time.time() if now is None else now
        st = self.store.get(route)
        if st is None or (st.state == CLOSED and st.failures == 0 and not st.manual):
            return Verdict(True)
        if st.manual:  # held open or disabled by hand: skipped, like an open circuit, until an operator says
            return Verdict(False, dirty=True, failures=st.failures)
        if st.state == CLOSED:
            return Verdict(True, dirty=True, failures=st.failures)
        if st.opened_until is not None and now < st.opened_until:
            return Verdict(False, dirty=True, retry_at=st.opened_until, failures=st.failures)
        # Cooldown over (or a probe that never reported back): one live request is the trial; if it
        # fails, it falls back like any failed attempt, so the trial costs its client nothing.
        if self.store.claim_probe(route, now, stale_after=self.max_cooldown):
            return Verdict(True, dirty=True, failures=st.failures)
        return Verdict(False, dirty=True, retry_at=now + 1, failures=st.failures)

    def record_success(self, route: str, verdict: Verdict) -> None:
        """Close the route if stored state says it had failed."""
        if verdict.dirty:
            self.store.reset(route)

    def record_failure(self, route: str, retry_after: float | None = None, now: float | None = None) -> int:
        """Count a failure; open after `threshold` in a row, or at once on a failed probe or Retry-After.

        Returns the route's consecutive failures, this one included (0 when the store is unreachable).
        """
        now = time.time() if now is None else now
        hint = min(retry_after, MAX_RETRY_AFTER_HONOURED) if retry_after else None
        return self.store.failure(route, now, self.threshold, (self.cooldown, self.max_cooldown), hint)

    def state(self, route: str) -> BreakerState:
        """The stored state of a route (closed when never recorded)."""
        return self.store.get(route) or BreakerState(CLOSED, 0, None)

    def describe(self, route: str) -> BreakerState:
        """The stored state with since when it holds, for an operator (not read on the request path)."""
        return self.store.describe(route) or BreakerState(CLOSED, 0, None)

    def set_manual(self, route: str, manual: str) -> None:
        """Hold the circuit open (HELD_OPEN), disable the route (DISABLED), or give it back to the
        breaker closed (""), for every worker and instance at once."""
        if manual not in ("", HELD_OPEN, DISABLED):
            raise ValueError(f"unknown manual state {manual!r}")
        self.store.set_manual(route, manual)


def cooldown_for(failures: int, threshold: int, cooldown: tuple[float, float]) -> float:
    """Cooldown doubling with each failure past the threshold, from the base up to the cap.

    The cap is a few seconds: a provider that recovers serves again soon after, and each trial
    costs at most one failed attempt of one request, which then falls back.
    """
    base, cap = cooldown
    return min(cap, base * (2 ** max(0, min(failures - threshold, 10))))


def next_state(st: BreakerState | None, now: float, threshold: int, cooldown: tuple[float, float],
               retry_after: float | None) -> BreakerState:
    """The state after one more failure (a pure function both stores share)."""
    failures = (st.failures if st else 0) + 1
    was_probe = st is not None and st.state == HALF_OPEN
    until = st.opened_until if st and st.opened_until else None
    if was_probe or failures >= threshold:
        candidate = now + cooldown_for(failures, threshold, cooldown)
        until = max(until or 0, candidate)  # a new cooldown never shortens an existing one
        state = OPEN
    else:
        state = st.state if st and st.state != HALF_OPEN else CLOSED
    if retry_after:
        until = max(until or 0, now + retry_after)
        state = OPEN
    return BreakerState(state, failures, until)


def _epoch(dt: datetime | None) -> float | None:
    return dt.replace(tzinfo=timezone.utc).timestamp() if dt else None


def _naive(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None) if epoch else None


class DatabaseBreakerStore:
    """Breaker state in the RouteState table (SQLite or PostgreSQL)."""

    def get(self, route: str) -> BreakerState | None:
        # Read on every attempt: raw SQL, one primary-key lookup.
        with connected():
            rows = query("SELECT state, failures, opened_until, manual FROM routestate WHERE route = ?", route)
        if not rows:
            return None
        state, failures, opened_until, manual = rows[0]
        return BreakerState(state, failures, _epoch(as_datetime(opened_until)), manual or "")

    def describe(self, route: str) -> BreakerState | None:
        with connected():
            row = RouteState.get_or_none(RouteState.route == route)
        if row is None:
            return None
        return BreakerState(row.state, row.failures, _epoch(row.opened_until), row.manual or "",
                            _epoch(row.updated_at))

    def set_manual(self, route: str, manual: str) -> None:
        with connected(), write_transaction():
            RouteState.insert(route=route, state=CLOSED, failures=0, updated_at=utcnow(),
                              manual="").on_conflict_ignore().execute()
            if manual == HELD_OPEN:
                changes = dict(state=OPEN, opened_until=None)
            elif manual == DISABLED:
                changes = {}
            else:  # back to the breaker, closed: a stale cooldown would otherwise linger
                changes = dict(state=CLOSED, failures=0, opened_until=None)
            RouteState.update(manual=manual, updated_at=utcnow(), **changes).where(RouteState.route == route).execute()

    def claim_probe(self, route: str, now: float, stale_after: float) -> bool:
        with connected():
            q = RouteState.update(state=HALF_OPEN, updated_at=utcnow()).where(
                (RouteState.route == route)
                & (((RouteState.state == OPEN) & (RouteState.opened_until <= _naive(now)))
                   | ((RouteState.state == HALF_OPEN) & (RouteState.updated_at <= utcnow() - timedelta(seconds=stale_after)))))
            return q.execute() == 1

    def reset(self, route: str) -> None:
        with connected():
            RouteState.update(state=CLOSED, failures=0, opened_until=None, updated_at=utcnow()).where(
                RouteState.route == route).execute()

    def failure(self, route: str, now: float, threshold: int, cooldown: tuple[float, float],
                retry_after: float | None) -> int:
        # Read-modify-write under a lock, or concurrent failures lose counts and a shorter
        # cooldown can overwrite a longer one. SQLite: BEGIN IMMEDIATE already serialises writers.
        # PostgreSQL (READ COMMITTED): make sure the row exists, then lock it with FOR UPDATE.
        with connected() as db, write_transaction():
            RouteState.insert(route=route, state=CLOSED, failures=0, updated_at=utcnow(),
                              manual="").on_conflict_ignore().execute()
            select = RouteState.select().where(RouteState.route == route)
            row = (select if is_sqlite_db(db) else select.for_update()).get()
            old = BreakerState(row.state, row.failures, _epoch(row.opened_until))
            new = next_state(old, now, threshold, cooldown, retry_after)
            RouteState.update(state=new.state, failures=new.failures, opened_until=_naive(new.opened_until),
                              updated_at=utcnow()).where(RouteState.route == route).execute()
        return new.failures


class RedisBreakerStore:
    """Breaker state in Redis hashes; failure updates run as one Lua script so they are atomic.

    If Redis is down or slow, the breaker fails open: every route counts as closed (requests still
    go to providers, with retries and failover), failures go unrecorded, and a warning is logged at
    most every 10 s. Short socket timeouts keep a hung Redis from stalling each request.
    """

    _FAILURE = """
    local h = redis.call('HGETALL', KEYS[1])
    local st = {}
    for i = 1, #h, 2 do st[h[i]] = h[i + 1] end
    local now, threshold, base, hint = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
    local cap = tonumber(ARGV[5])
    local failures = tonumber(st['failures'] or '0') + 1
    local until_ = tonumber(st['opened_until'] or '0')
    local state = st['state'] or 'closed'
    if state == 'half_open' or failures >= threshold then
      local extra = math.max(0, math.min(failures - threshold, 10))
      local cd = math.min(cap, base * (2 ^ extra))
      until_ = math.max(until_, now + cd)
      state = 'open'
    end
    if hint > 0 then until_ = math.max(until_, now + hint); state = 'open' end
    redis.call('HSET', KEYS[1], 'state', state, 'failures', failures, 'opened_until', until_, 'updated_at', now)
    if (st['manual'] or '') == '' then redis.call('EXPIRE', KEYS[1], 86400) end  -- a hand-set flag never expires
    return failures
    """
    _RESET = """
    if (redis.call('HGET', KEYS[1], 'manual') or '') == '' then return redis.call('DEL', KEYS[1]) end
    redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'opened_until', 0)
    return 0
    """
    _PROBE = """
    local st = redis.call('HMGET', KEYS[1], 'state', 'opened_until', 'updated_at')
    local now, stale = tonumber(ARGV[1]), tonumber(ARGV[2])
    if (st[1] == 'open' and tonumber(st[2] or '0') <= now)
       or (st[1] == 'half_open' and tonumber(st[3] or '0') <= now - stale) then
      redis.call('HSET', KEYS[1], 'state', 'half_open', 'updated_at', now)
      return 1
    end
    return 0
    """

    def __init__(self, url: str, prefix: str = "kyma:breaker:", *, timeout: float = 0.5):
        import redis

        self._errors = redis.RedisError
        self.redis = redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout,
                                          socket_connect_timeout=timeout)
        self.prefix = prefix
        self._failure = self.redis.register_script(self._FAILURE)
        self._probe = self.redis.register_script(self._PROBE)
        self._reset = self.redis.register_script(self._RESET)
        self._warn = OutageWarning(log, "Redis breaker store unavailable (%s); treating every route as closed")
        self._pipeliner = Pipeliner(self.redis)  # every attempt reads its route: shared round trips

    def get(self, route: str) -> BreakerState | None:
        try:
            h = self._pipeliner.execute("HGETALL", self.prefix + route)
        except self._errors as exc:
            self._warn(exc)
            return None
        if not h:
            return None
        until = float(h.get("opened_until") or 0) or None
        return BreakerState(h.get("state", CLOSED), int(h.get("failures", 0)), until, h.get("manual", ""),
                            float(h["updated_at"]) if h.get("updated_at") else None)

    describe = get  # one HGETALL brings every field anyway

    def set_manual(self, route: str, manual: str) -> None:
        # Unlike the breaker's own writes, an operator must learn when Redis did not take it.
        key = self.prefix + route
        try:
            if manual == HELD_OPEN:
                self.redis.hset(key, mapping={"state": OPEN, "opened_until": 0, "manual": manual,
                                              "updated_at": time.time()})
            elif manual == DISABLED:
                self.redis.hset(key, mapping={"manual": manual, "updated_at": time.time()})
            else:
                self.redis.delete(key)
                return
            self.redis.persist(key)
        except self._errors as exc:
            raise KymaError(f"Redis did not store the switch ({exc}); nothing changed. Try again.",
                            status=503) from exc

    def claim_probe(self, route: str, now: float, stale_after: float) -> bool:
        try:
            return bool(self._probe(keys=[self.prefix + route], args=[now, stale_after]))
        except self._errors as exc:
            self._warn(exc)
            return True

    def reset(self, route: str) -> None:
        try:
            self._reset(keys=[self.prefix + route])  # keeps a hand-set flag a late success must not undo
        except self._errors as exc:
            self._warn(exc)

    def failure(self, route: str, now: float, threshold: int, cooldown: tuple[float, float],
                retry_after: float | None) -> int:
        try:
            return int(self._failure(keys=[self.prefix + route],
                                     args=[now, threshold, cooldown[0], retry_after or 0, cooldown[1]]))
        except self._errors as exc:
            self._warn(exc)
            return 0
