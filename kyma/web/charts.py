"""Server-rendered SVG chart geometry (no JavaScript): templates draw the shapes computed here."""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class Tick:
    """An axis label at a position (x for the time axis, y for the value axis)."""

    at: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class AxisChart:
    """A bar chart over time with labelled axes: the plot box, bars, ticks on both axes and the axis titles."""

    width: int
    height: int
    left: int
    bottom: int
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    x_title: str
    y_title: str
    empty: bool


def nice_ceiling(value: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten that reaches `value` (0 for nothing): a round axis maximum."""
    if value <= 0:
        return 0
    step = 10 ** max(0, math.floor(math.log10(value)))
    return next(m * step for m in (1, 2, 5, 10) if m * step >= value)


def _value_ticks(axis_max: int, fmt, top: float, bottom: float) -> list[Tick]:
    ticks = [Tick(bottom, fmt(0), "end")]
    if axis_max and axis_max % 2 == 0:  # a half-way mark only where it is a whole number
        ticks.append(Tick(round((bottom + top) / 2, 2), fmt(axis_max // 2), "end"))
    if axis_max:
        ticks.append(Tick(top, fmt(axis_max), "end"))
    return ticks


def _time_ticks(points: list[tuple], hourly: bool, left: float, slot: float) -> list[Tick]:
    fmt = "%H:00" if hourly else "%m-%d"
    ticks = []
    if points:
        for i, anchor in ((0, "start"), (len(points) // 2, "middle"), (len(points) - 1, "end")):
            x = left + i * slot + (0 if anchor == "start" else slot if anchor == "end" else slot / 2)
            ticks.append(Tick(round(x, 2), points[i][0].strftime(fmt), anchor))
    return ticks


def time_chart(points: list[tuple], fmt, hourly: bool, y_title: str, width: int = 340,
               height: int = 170) -> AxisChart:
    """Vertical bars of (UTC start, whole-number value) points on a round value axis, with value and time ticks."""
    left, top, bottom = 78, 24, height - 36  # room for value labels, the unit, time labels and their title
    axis_max = nice_ceiling(max((v for _, v in points), default=0))
    slot = (width - left) / max(1, len(points))
    bars = []
    for i, (start, value) in enumerate(points):
        h = (value / axis_max) * (bottom - top) if axis_max else 0
        h = max(h, 1.5) if value else 0  # a tiny value stays visible
        label = start.strftime("%Y-%m-%d %H:00" if hourly else "%Y-%m-%d")
        bars.append(Bar(round(left + i * slot + 1, 2), round(bottom - h, 2), round(max(slot - 2, 1), 2),
                        round(h, 2), label, fmt(value)))
    return AxisChart(width, height, left, bottom, bars, _time_ticks(points, hourly, left, slot),
                     _value_ticks(axis_max, fmt, top, bottom), "hour (UTC)" if hourly else "day (UTC)", y_title,
                     axis_max == 0)


def _count(value: int) -> str:
    return f"{value:,}"


def usage_charts(buckets: list, hourly: bool) -> dict[str, AxisChart]:
    """Requests, tokens and spend per bucket (kyma.services.usage.Bucket), each with its unit on the value axis."""
    at = [b.start for b in buckets]
    return {"requests": time_chart(list(zip(at, (b.requests for b in buckets))), _count, hourly, "requests"),
            "tokens": time_chart(list(zip(at, (b.tokens for b in buckets))), _count, hourly, "tokens"),
            "spend": time_chart(list(zip(at, (b.cost_micros for b in buckets))), usd, hourly,
                                "USD")}
