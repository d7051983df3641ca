"""Which fault (if any) a simulated provider injects into one request.

Two sources: configured rates (KYMA_SIM_FAULTS="503:0.02,429:0.01") drawn from a seeded RNG,
and the per-request header `X-Sim-Fault`, which wins over the rates. The header is either one
fault for every simulator (`503`) or a comma list of `target=fault` entries, where target is
`provider`, `provider@model`, `@model` or `*`; the first entry matching this provider and the
request's model applies. Stream faults take an optional position, `cut:5` = after 5 events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Every fault kind the simulator knows, and what it does (see app.py / stream.py).
FAULT_KINDS = (
    "429", "500", "502", "503", "refuse", "timeout", "stall", "cut", "malformed", "no-done",
    "no-usage", "context-length",
)
# Events sent before a stream fault fires when the header gives no position: `malformed`
# replaces the very first event (so a gateway can still fall back); cut/stall hit mid-answer.
DEFAULT_POSITION = {"malformed": 0, "cut": 3, "stall": 3}
NO_FAULT = "none"


class FaultSyntaxError(ValueError):
    """A fault list or header that cannot be parsed."""


@dataclass(frozen=True)
class Fault:
    """One injected fault: its kind and, for stream faults, how many events precede it."""

    kind: str
    position: int = 0


@dataclass(frozen=True)
class FaultRates:
    """Configured per-provider fault probabilities, in declaration order."""

    rates: tuple[tuple[str, float], ...]

    def draw(self, rng: random.Random) -> Fault | None:
        """One random draw: a fault with its configured probability, else None."""
        if not self.rates:
            return None
        x = rng.random()
        for kind, rate in self.rates:
            if x < rate:
                return make_fault(kind)
            x -= rate
        return None


def make_fault(spec: str) -> Fault:
    """`cut:5` → Fault("cut", 5); validates the kind."""
    kind, _, pos = spec.strip().lower().partition(":")
    if kind not in FAULT_KINDS:
        raise FaultSyntaxError(f"unknown fault {kind!r} (known: {', '.join(FAULT_KINDS)})")
    if pos:
        if not pos.isdigit():
            raise FaultSyntaxError(f"bad fault position in {spec!r}")
        return Fault(kind, int(pos))
    return Fault(kind, DEFAULT_POSITION.get(kind, 0))


def parse_rates(text: str) -> FaultRates:
    """Parse KYMA_SIM_FAULTS, e.g. "503:0.02,429:0.01,timeout:0.01"."""
    rates = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, rate = item.rpartition(":")
        if not sep:
            raise FaultSyntaxError(f"fault rate {item!r} needs the form kind:probability")
        make_fault(kind)
        rates.append((kind.lower(), float(rate)))
    if sum(r for _, r in rates) > 1:
        raise FaultSyntaxError("fault probabilities add up to more than 1")
    return FaultRates(tuple(rates))


def _matches(target: str, provider: str, model: str) -> bool:
    if target in ("", "*"):
        return True
    name, _, wanted_model = target.partition("@")
    return name in ("", "*", provider) and wanted_model in ("", "*", model)


def fault_from_header(header: str, provider: str, model: str) -> Fault | None | str:
    """The header's fault for this provider and model; NO_FAULT when it says `none`; None if silent."""
    for entry in filter(None, (p.strip() for p in header.split(","))):
        target, sep, spec = entry.rpartition("=")
        if not sep:
            target, spec = "*", entry
        if _matches(target.strip(), provider, model):
            return NO_FAULT if spec.strip().lower() == NO_FAULT else make_fault(spec)
    return None


class FaultPicker:
    """Decides each request's fault: the header first, then the seeded rate draw."""

    def __init__(self, provider: str, rates: FaultRates, seed: int):
        self.provider = provider
        self.rates = rates
        self.rng = random.Random(seed)

    def pick(self, header: str | None, model: str) -> Fault | None:
        """The fault to inject, or None; raises FaultSyntaxError on a bad header."""
        if header:
            chosen = fault_from_header(header, self.provider, model)
            if chosen == NO_FAULT:
                return None
            if chosen is not None:
                return chosen
        return self.rates.draw(self.rng)
