"""Per-account tiered rate limits: requests/minute, per-model requests/minute, tokens/minute.

Algorithm: a sliding window of 60 one-second buckets. A request is admitted
only if, for every limit, the units counted in the last 60 s plus its own cost fit the limit;
so at most N requests land in any 60 s span (to the second), with no burst at a window edge.
A rejected attempt consumes nothing. Counts live in shared storage (the database, or Redis when
KYMA_REDIS_URL is set), so the limits hold across every worker and gateway instance.

Tokens per minute: admission reserves prompt + max_tokens; record_tokens() then moves the
reservation to the actual total in the same bucket, so a request that used fewer tokens frees
the difference at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from kyma.errors import PayloadTooLarge, RateLimited
from kyma.services.tiers import Tier
from kyma.services.window_stores import (WINDOW, Buckets, Check, DatabaseStore, MemoryStore, RedisStore,
                                          WindowStore)


@dataclass(frozen=True)
class Admission:
    """An admitted request: the headers to send and the token reservation to correct later."""

    headers: dict[str, str]
    tokens_reserved: int
    reserved_at: int  # the bucket (epoch second) holding the reservation
    account_id: int = 0
    model_id: str = ""


def _keys(account_id: int, model_id: str) -> tuple[str, str, str]:
    return f"rl:{account_id}:rpm", f"rl:{account_id}:m:{model_id}", f"rl:{account_id}:tpm"


def reset_seconds(buckets: Buckets, now: int) -> int:
    """Seconds until the oldest counted unit leaves the window (0 when nothing is counted)."""
    live = [b for b, c in buckets.items() if c]
    return max(1, min(live) + WINDOW - now) if live else 0


def retry_after(buckets: Buckets, check: Check, now: int) -> int:
    """Whole seconds (≥ 1) until enough old units leave the window for `check` to fit."""
    excess = sum(buckets.values()) + check.cost - check.limit
    if check.cost > check.limit:
        return WINDOW
    for bucket in sorted(buckets):
        excess -= buckets[bucket]
        if excess <= 0:
            return max(1, bucket + WINDOW - now)
    return 1


def _duration(seconds: int) -> str:
    return f"{seconds}s"


class Limiter:
    """Admission control for one gateway (all workers share the store)."""

    def __init__(self, store: WindowStore, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    @classmethod
    def create(cls, settings) -> "Limiter":
        """Redis when settings.redis_url is set, else the database."""
        if settings.redis_url:
            return cls(RedisStore(settings.redis_url, settings.redis_prefix))
        return cls(DatabaseStore())

    @property
    def in_database(self) -> bool:
        """True when counters live in the gateway's database, so they can join its transactions."""
        return isinstance(self.store, DatabaseStore)

    @classmethod
    def in_memory(cls, clock: Callable[[], float] = time.time) -> "Limiter":
        """A per-process limiter (tests, single-process tools)."""
        return cls(MemoryStore(), clock)

    def admit(self, account_id: int, tier: Tier, model_id: str, prompt_tokens: int, max_tokens: int) -> Admission:
        """Admit one request or raise RateLimited (429) / PayloadTooLarge (413)."""
        tokens = max(0, prompt_tokens) + max(0, max_tokens)
        if tokens > tier.max_tokens_per_request:
            raise PayloadTooLarge(
                f"This request needs up to {tokens} tokens (prompt {prompt_tokens} + max_tokens {max_tokens}); "
                f"tier {tier.level} allows {tier.max_tokens_per_request} tokens per request. "
                "Lower max_tokens or shorten the prompt.", code="max_tokens_per_request_exceeded")
        rpm_key, model_key, tpm_key = _keys(account_id, model_id)
        checks = [Check(rpm_key, tier.rpm, 1), Check(model_key, tier.per_model_rpm, 1), Check(tpm_key, tier.tpm, tokens)]
        now = int(self.clock())
        ok, seen = self.store.consume(f"rl:{account_id}", checks, now)
        if not ok:
            raise self._rejection(checks, seen, now, model_id)
        after = [{**b, now: b.get(now, 0) + c.cost} for b, c in zip(seen, checks)]
        headers = _headers(tier, after[0], after[2], now)
        return Admission(headers, tokens, now, account_id, model_id)

    def _rejection(self, checks: list[Check], seen: list[Buckets], now: int, model_id: str) -> RateLimited:
        rpm, per_model, tpm = checks
        labels = {
            rpm.key: f"{rpm.limit} requests/minute",
            per_model.key: f"{per_model.limit} requests/minute for model {model_id}",
            tpm.key: f"{tpm.limit} tokens/minute; this request reserves {tpm.cost}",
        }
        failing = [(c, b) for c, b in zip(checks, seen) if sum(b.values()) + c.cost > c.limit]
        check, buckets = max(failing, key=lambda cb: retry_after(cb[1], cb[0], now))
        wait = retry_after(buckets, check, now)
        tier_like = _Limits(rpm.limit, tpm.limit)
        headers = _headers(tier_like, seen[0], seen[2], now)
        headers.update({"Retry-After": str(wait), "retry-after-ms": str(wait * 1000)})
        return RateLimited(f"Rate limit exceeded ({labels[check.key]}). Try again in {wait} seconds.",
                           headers=headers)

    def record_tokens(self, account_id: int, tokens_actual: int, tokens_reserved: int, *,
                      reserved_at: int | None = None) -> None:
        """Replace a TPM reservation by the tokens actually used (pass Admission.reserved_at)."""
        now = int(self.clock())
        self.store.adjust(_keys(account_id, "")[2], reserved_at if reserved_at is not None else now,
                          tokens_actual - tokens_reserved, now)

    def cancel(self, admission: Admission) -> None:
        """Give back an admission that never ran (e.g. 402 after admit): its request slots and tokens."""
        now = int(self.clock())
        rpm_key, model_key, tpm_key = _keys(admission.account_id, admission.model_id)
        for key, units in ((rpm_key, 1), (model_key, 1), (tpm_key, admission.tokens_reserved)):
            self.store.adjust(key, admission.reserved_at, -units, now)

    def usage(self, account_id: int, tier: Tier) -> dict:
        """Current counters for GET /v1/auth/limits."""
        now = int(self.clock())
        rpm_key, _, tpm_key = _keys(account_id, "")
        rpm, tpm = self.store.peek([rpm_key, tpm_key], now)
        used = sum(rpm.values())
        reset = reset_seconds(rpm, now)
        return {
            "tier": tier.level, "rpm_limit": tier.rpm, "rpm_used": used, "rpm_remaining": max(0, tier.rpm - used),
            "per_model_rpm_limit": tier.per_model_rpm, "tpm_limit": tier.tpm,
            "tpm_used": max(0, sum(tpm.values())), "tpm_remaining": max(0, tier.tpm - sum(tpm.values())),
            "max_single_request": tier.max_tokens_per_request,
            "resets_at": datetime.fromtimestamp(now + reset, timezone.utc).isoformat().replace("+00:00", "Z"),
        }


@dataclass(frozen=True)
class _Limits:
    rpm: int
    tpm: int


def _headers(tier, rpm: Buckets, tpm: Buckets, now: int) -> dict[str, str]:
    used_requests, used_tokens = sum(rpm.values()), sum(tpm.values())
    return {
        "x-ratelimit-limit-requests": str(tier.rpm),
        "x-ratelimit-remaining-requests": str(max(0, tier.rpm - used_requests)),
        "x-ratelimit-reset-requests": _duration(reset_seconds(rpm, now)),
        "x-ratelimit-limit-tokens": str(tier.tpm),
        "x-ratelimit-remaining-tokens": str(max(0, tier.tpm - used_tokens)),
        "x-ratelimit-reset-tokens": _duration(reset_seconds(tpm, now)),
    }
