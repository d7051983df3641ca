"""What the credits and limits endpoints report, assembled from the ledger, the ladder and the limiter."""

from __future__ import annotations

from datetime import datetime, time, timezone

from kyma.models import RequestLog
from kyma.services import ledger
from kyma.services.pricing import micros_to_usd
from kyma.services.tiers import TierLadder


def balance_report(account_id: int, ladder: TierLadder) -> dict:
    """GET /v1/credits/balance: USD balance, credit on hold, lifetime purchases, tier and the next one."""
    b = ledger.balance(account_id)
    tier = ladder.get(b.tier)
    higher = [t for t in ladder.tiers if t.level > tier.level]
    next_tier = None
    if higher:
        n = higher[0]
        next_tier = {"tier": n.level, "min_deposit": n.min_purchased_usd,
                     "purchase_needed": micros_to_usd(max(0, n.min_purchased_micros - b.lifetime_purchased_micros))}
    return {
        "object": "credit.balance",
        "balance": micros_to_usd(b.balance_micros),
        "currency": "USD",
        "on_hold": micros_to_usd(b.held_micros),
        "lifetime_purchased": micros_to_usd(b.lifetime_purchased_micros),
        "tier": tier.level,
        "tier_name": tier.name,
        "next_tier": next_tier,
        "balance_micros": b.balance_micros,
    }


def limits_report(account_id: int, ladder: TierLadder, limiter) -> dict:
    """GET /v1/auth/limits: the account's tier limits and live usage counters."""
    b = ledger.balance(account_id)
    tier = ladder.get(b.tier)
    midnight = datetime.combine(datetime.now(timezone.utc).date(), time.min)
    used_today = RequestLog.select().where((RequestLog.account == account_id)
                                           & (RequestLog.created_at >= midnight)).count()
    usage = limiter.usage(account_id, tier)
    return {**usage, "has_credits": b.balance_micros > 0, "used_today": used_today,
            "remaining": usage["rpm_remaining"]}


def tiers_report(ladder: TierLadder) -> dict:
    """GET /v1/limits/tiers: the public tier matrix."""
    return {"object": "tier.matrix", "tiers": [t.to_api() for t in ladder.tiers]}
