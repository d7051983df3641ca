"""The rate-limit tier ladder: data (kyma/data/tiers.json or KYMA_TIERS), loaded into typed tiers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kyma.services.pricing import usd_to_micros


@dataclass(frozen=True)
class Tier:
    """One rung of the ladder: what it costs to reach and the limits it grants."""

    level: int
    name: str
    min_purchased_usd: float
    rpm: int
    per_model_rpm: int
    tpm: int
    max_tokens_per_request: int

    @property
    def min_purchased_micros(self) -> int:
        return usd_to_micros(self.min_purchased_usd)

    def to_api(self) -> dict:
        """The object GET /v1/limits/tiers lists (Kyma's field names)."""
        return {
            "tier": self.level, "name": self.name, "min_deposit": self.min_purchased_usd,
            "rpm": self.rpm, "per_model_rpm": self.per_model_rpm, "tpm": self.tpm,
            "max_single_request": self.max_tokens_per_request,
        }


@dataclass(frozen=True)
class TierLadder:
    """Tiers ordered by level; the first one must need no purchase."""

    tiers: tuple[Tier, ...]

    @classmethod
    def load(cls, path: Path) -> "TierLadder":
        """Read and validate a tiers file; a malformed ladder is an error at start-up."""
        data = json.loads(Path(path).read_text())
        tiers = tuple(sorted((Tier(
            level=int(t["level"]), name=str(t.get("name", f"Tier {t['level']}")),
            min_purchased_usd=float(t["min_purchased_usd"]), rpm=int(t["rpm"]),
            per_model_rpm=int(t["per_model_rpm"]), tpm=int(t["tpm"]),
            max_tokens_per_request=int(t["max_tokens_per_request"]),
        ) for t in data["tiers"]), key=lambda t: t.level))
        if not tiers or tiers[0].min_purchased_usd != 0:
            raise ValueError(f"{path}: the lowest tier must have min_purchased_usd 0")
        levels = [t.level for t in tiers]
        if len(set(levels)) != len(levels):
            raise ValueError(f"{path}: tier levels must be unique")
        thresholds = [t.min_purchased_usd for t in tiers]
        if thresholds != sorted(thresholds):
            raise ValueError(f"{path}: min_purchased_usd must grow with the level")
        return cls(tiers)

    def for_purchased(self, micros: int) -> Tier:
        """The highest tier whose threshold lifetime purchases (micro-dollars) reach."""
        best = self.tiers[0]
        for tier in self.tiers:
            if micros >= tier.min_purchased_micros:
                best = tier
        return best

    def above(self, tier: Tier) -> Tier | None:
        """The next tier up from `tier`; None at the top of the ladder."""
        return next((t for t in self.tiers if t.level > tier.level), None)

    def get(self, level: int) -> Tier:
        """The tier with this level; an unknown level (ladder edited) falls to the nearest lower one."""
        best = self.tiers[0]
        for tier in self.tiers:
            if tier.level <= level:
                best = tier
        return best
