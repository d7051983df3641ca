"""The look-back periods the admin console offers: the last hour, day, week or month."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kyma.models import utcnow


@dataclass(frozen=True)
class Period:
    """A span ending now."""

    name: str
    title: str
    span: timedelta

    def start(self, now: datetime | None = None) -> datetime:
        return (now or utcnow()) - self.span

    @property
    def minutes(self) -> float:
        return self.span.total_seconds() / 60


PERIODS = {p.name: p for p in (Period("15m", "last 15 minutes", timedelta(minutes=15)),
                               Period("1h", "last hour", timedelta(hours=1)),
                               Period("24h", "last 24 hours", timedelta(hours=24)),
                               Period("7d", "last 7 days", timedelta(days=7)),
                               Period("30d", "last 30 days", timedelta(days=30)))}


def period(name: str | None, default: str = "24h") -> Period:
    """The named period; an unknown name is the default."""
    return PERIODS.get(name or "", PERIODS[default])
