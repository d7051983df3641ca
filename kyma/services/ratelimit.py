"""Per-account tiered rate limits: requests/minute, per-model requests/minute, tokens/minute.

Algorithm: continuous refill (GCRA, equivalent to a token bucket). A limit of N per minute holds
up to N units; each request takes its cost out and the allowance refills at N per minute, one
unit every 60/N s. So a tier's rpm allows a burst of rpm requests, then one more every 60/rpm s,
and a 429's Retry-After is the real time until the next request fits (a few seconds, not a
minute). Over any 60 s at most 2N - 1 units pass (a full burst plus a minute of refill); the
sustained rate is N per minute. A request is admitted only if all three limits fit; a rejected
attempt consumes nothing. State lives in shared storage (the database, or Redis when
KYMA_REDIS_URL is set), so the limits hold across every worker and gateway instance.

Tokens per minute: admission reserves prompt + max_tokens; record_tokens() then moves the
reservation to the actual total (a refund, or an extra charge), so a request that used fewer
tokens frees the difference at once.

Headers: x-ratelimit-limit/remaining/reset-requests and -tokens, OpenAI style; remaining is what
could be admitted right now and reset the time until the allowance is full again ("1.2s", "6s",
"1m0s"). The -requests headers describe the account or the per-model limit, whichever has fewer
requests left, and x-ratelimit-scope names it (`account` or `model`). On a 429 they describe the
limit that refused, and x-ratelimit-scope is `account`, `model` or `tokens`; Retry-After (whole
seconds, rounded up) and retry-after-ms say when the request would be admitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from kyma.errors import PayloadTooLarge, RateLimited
from kyma.services.tiers import Tier
from kyma.services.window_stores import (WINDOW_US, Check, DatabaseStore, MemoryStore, RateStore, RedisStore,
                                          advanced, fits, scaled)


@dataclass(frozen=True)
class Admission:
    """An admitted request: the headers to send and the token reservation to correct later."""

    headers: dict[str, str]
    tokens_reserved: int
    reserved_at: int  # when it was admitted (epoch second); refunds need no more than the key
    account_id: int = 0
    model_id: str = ""


def _keys(account_id: int, model_id: str) -> tuple[str, str, str]:
    return f"rl:{account_id}:rpm", f"rl:{account_id}:m:{model_id}", f"rl:{account_id}:tpm"


SCOPES = ("account", "model", "tokens")  # the three checks, in order


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def remaining(tat: int, now: int, limit: int, *, requests: bool = True) -> int:
    """How many more units fit right now: requests one at a time, or tokens in one request."""
    room = WINDOW_US - max(0, tat - now)
    if room < 0 or limit <= 0:
        return 0
    if requests:
        count = room // max(1, scaled(1, limit))
    else:  # the largest c with scaled(c, limit) <= room
        count = ((room + 1) * limit - 1) // WINDOW_US
    return max(0, min(limit, count))


def wait_micros(tat: int, now: int, check: Check) -> int:
    """Microseconds until `check` fits (0 when it fits now)."""
    return max(0, advanced(tat, now, check) - WINDOW_US - now)


def duration(micros: int) -> str:
    """A duration as OpenAI writes it: "0s", "250ms", "1.2s", "6s", "1m0s" (rounded up to the ms)."""
    ms = _ceil_div(max(0, micros), 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60_000)
    seconds = f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{seconds}" if minutes else seconds


class Limiter:
    """Admission control for one gateway (all workers share the store)."""

    def __init__(self, store: RateStore, clock: Callable[[], float] = time.time):
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
        now = _micros(self.clock())
        ok, tats = self.store.consume(f"rl:{account_id}", checks, now)
        if not ok:
            raise _rejection(checks, tats, now, model_id)
        after = [advanced(t, now, c) for t, c in zip(tats, checks)]
        return Admission(_headers(checks, after, now), tokens, now // 1_000_000, account_id, model_id)

    def record_tokens(self, account_id: int, tokens_actual: int, tokens_reserved: int, *,
                      reserved_at: int | None = None) -> None:
        """Replace a TPM reservation by the tokens actually used (`reserved_at` is accepted and not needed)."""
        self.store.adjust(_keys(account_id, "")[2], tokens_actual - tokens_reserved, _micros(self.clock()))

    def cancel(self, admission: Admission) -> None:
        """Give back an admission that never ran (e.g. 402 after admit): its request slots and tokens."""
        now = _micros(self.clock())
        rpm_key, model_key, tpm_key = _keys(admission.account_id, admission.model_id)
        for key, units in ((rpm_key, 1), (model_key, 1), (tpm_key, admission.tokens_reserved)):
            self.store.adjust(key, -units, now)

    def usage(self, account_id: int, tier: Tier) -> dict:
        """The account's limits and what is left of them now, for GET /v1/auth/limits."""
        # *_used: the limit minus what could be admitted now. resets_at: when the request and token
        # allowances are both full again (now, to the second, when nothing is in use).
        now = _micros(self.clock())
        rpm_key, _, tpm_key = _keys(account_id, "")
        rpm_tat, tpm_tat = self.store.peek([rpm_key, tpm_key], now)
        rpm_left = remaining(rpm_tat, now, tier.rpm)
        tpm_left = remaining(tpm_tat, now, tier.tpm, requests=False)
        full_at = _ceil_div(max(now, rpm_tat, tpm_tat), 1_000_000)
        return {
            "tier": tier.level, "rpm_limit": tier.rpm, "rpm_used": tier.rpm - rpm_left, "rpm_remaining": rpm_left,
            "per_model_rpm_limit": tier.per_model_rpm, "tpm_limit": tier.tpm,
            "tpm_used": tier.tpm - tpm_left, "tpm_remaining": tpm_left,
            "max_single_request": tier.max_tokens_per_request,
            "resets_at": datetime.fromtimestamp(full_at, timezone.utc).isoformat().replace("+00:00", "Z"),
        }


def _rejection(checks: list[Check], tats: list[int], now: int, model_id: str) -> RateLimited:
    """The 429 for the check that needs the longest wait, with its scope and Retry-After."""
    rpm, per_model, tpm = checks
    labels = (f"{rpm.limit} requests/minute",
              f"{per_model.limit} requests/minute for model {model_id}",
              f"{tpm.limit} tokens/minute; this request reserves {tpm.cost}")
    failing = [i for i, (t, c) in enumerate(zip(tats, checks)) if not fits(t, now, c)]
    worst = max(failing, key=lambda i: wait_micros(tats[i], now, checks[i]))
    if checks[worst].charge > WINDOW_US:
        wait_us = WINDOW_US  # more than a full allowance: it never fits, so say a minute
    else:
        wait_us = wait_micros(tats[worst], now, checks[worst])
    seconds = max(1, _ceil_div(wait_us, 1_000_000))
    headers = _headers(checks, tats, now, SCOPES[worst])
    headers.update({"Retry-After": str(seconds), "retry-after-ms": str(max(1, _ceil_div(wait_us, 1000)))})
    return RateLimited(f"Rate limit exceeded ({labels[worst]}). Try again in {seconds} "
                       f"second{'' if seconds == 1 else 's'}.", headers=headers)


def _headers(checks: list[Check], tats: list[int], now: int, refused: str | None = None) -> dict[str, str]:
    """x-ratelimit-*: the deciding requests limit (or the refused one) and the tokens limit."""
    rpm, per_model, tpm = checks
    left = [remaining(t, now, c.limit) for t, c in zip(tats[:2], (rpm, per_model))]
    if refused in ("account", "model"):
        which = SCOPES.index(refused)
    else:
        which = 1 if left[1] < left[0] else 0
    return {
        "x-ratelimit-limit-requests": str(checks[which].limit),
        "x-ratelimit-remaining-requests": str(left[which]),
        "x-ratelimit-reset-requests": duration(tats[which] - now),
        "x-ratelimit-limit-tokens": str(tpm.limit),
        "x-ratelimit-remaining-tokens": str(remaining(tats[2], now, tpm.limit, requests=False)),
        "x-ratelimit-reset-tokens": duration(tats[2] - now),
        "x-ratelimit-scope": refused or SCOPES[which],
    }
