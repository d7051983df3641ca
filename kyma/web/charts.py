"""Server-rendered SVG chart geometry (no JavaScript): templates draw the shapes computed here."""

from __future__ import annotations

from dataclasses import dataclass

from kyma.services.dashboard import DaySpend, ModelSpend
from kyma.web.money import usd


@dataclass(frozen=True)
class Bar:
    """One bar: position and size in SVG user units, plus what its tooltip and label say."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: str


@dataclass(frozen=True)
class Chart:
    """A chart's viewBox size, bars, axis maximum (formatted) and whether there is any data."""

    width: int
    height: int
    bars: list[Bar]
    max_label: str
    empty: bool


def daily_spend_chart(days: list[DaySpend], width: int = 420, height: int = 120) -> Chart:
    """Vertical bars, one per day, scaled to the busiest day."""
    top = max((d.cost_micros for d in days), default=0)
    slot = width / max(1, len(days))
    bars = []
    for i, d in enumerate(days):
        h = (d.cost_micros / top) * (height - 10) if top else 0
        h = max(h, 1.5) if d.cost_micros else 0  # a tiny spend stays visible
        bars.append(Bar(round(i * slot + 1, 2), round(height - h, 2), round(slot - 2, 2), round(h, 2),
                        d.day.isoformat(), f"{usd(d.cost_micros)} · {d.requests} req"))
    return Chart(width, height, bars, usd(top), top == 0)


def model_spend_chart(models: list[ModelSpend], width: int = 420, row: int = 24) -> Chart:
    """Horizontal bars, one per model that cost something, scaled to the most expensive; labels left of the bars."""
    models = [m for m in models if m.cost_micros > 0]  # a $0 bar (an unknown model, a failed call) says nothing
    top = max((m.cost_micros for m in models), default=0)
    label_w, value_w = 110, 120
    span = width - label_w - value_w
    bars = []
    for i, m in enumerate(models):
        w = (m.cost_micros / top) * span if top else 0
        w = max(w, 2) if m.cost_micros else 0
        bars.append(Bar(label_w, i * row + 4, round(w, 2), row - 8, m.model,
                        f"{usd(m.cost_micros)} · {m.requests} req"))
    return Chart(width, max(row, row * len(models)), bars, usd(top), not models)
