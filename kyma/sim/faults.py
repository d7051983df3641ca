"""Which fault (if any) a simulated provider injects into one request.

Three sources: an outage window (POST /sim/outage), which wins over everything; the per-request
header `X-Sim-Fault`; and configured rates (KYMA_SIM_FAULTS="503:0.02,429:0.01") drawn from a
seeded RNG. The header is either one fault for every simulator (`503`) or a comma list of
`target=fault` entries, where target is `provider`, `provider@model`, `@model` or `*`; the first
entry matching this provider and the request's model applies.

A fault is `kind[:number][+once]`. The number is a position for stream faults (`cut:5` = after 5
events), Retry-After seconds for `429`, the delay for `slow-first` (headers at once, the first
token that many seconds later), and the longest wait for `gate` (held until POST /sim/gate/release,
then answered as usual; see gate.py). `+once` injects the fault into the first request with this header
and these messages only: a retry of the same request is served cleanly, as from a provider that
recovered from a blip.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import OrderedDict
from dataclasses import dataclass

# Every fault kind the simulator knows, and what it does (see app.py / stream.py).
FAULT_KINDS = (
    "429", "500", "502", "503", "refuse", "timeout", "stall", "cut", "malformed", "garbage", "no-done",
    "no-finish", "no-usage", "context-length", "slow-first", "gate",
)
# The number when the spec gives none: events before a stream fault fires (`malformed` slips one
# bad event in before the first, cut/stall/garbage hit mid-answer), Retry-After for 429, the delay
# of slow-first, the longest wait at a gate.
DEFAULT_NUMBER = {"malformed": 0, "cut": 3, "stall": 3, "garbage": 3, "429": 1, "slow-first": 20, "gate": 60}
NO_FAULT = "none"
ONCE_MEMORY = 10000  # request fingerprints an `+once` fault remembers
MAX_WAIT_SECONDS = 600  # the longest slow-first delay or gate wait: a request cannot hold a connection longer


class FaultSyntaxError(ValueError):
    """A fault list or header that cannot be parsed."""


@dataclass(frozen=True)
class Fault:
    """One injected fault: its kind and, for stream faults, how many events precede it."""

    kind: str
    position: int = 0  # or Retry-After seconds (429), the first token's delay (slow-first), a gate's wait
    once: bool = False


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
    """`cut:5` → Fault("cut", 5), `500+once` → Fault("500", once=True); validates the kind."""
    text = spec.strip().lower()
    text, once = (text[:-5], True) if text.endswith("+once") else (text, False)
    kind, _, pos = text.partition(":")
    if kind not in FAULT_KINDS:
        raise FaultSyntaxError(f"unknown fault {kind!r} (known: {', '.join(FAULT_KINDS)})")
    if pos:
        if not pos.isdigit():
            raise FaultSyntaxError(f"bad fault number in {spec!r}")
        if kind in ("slow-first", "gate") and int(pos) > MAX_WAIT_SECONDS:
            raise FaultSyntaxError(f"{kind} waits {MAX_WAIT_SECONDS} seconds at most, not {pos}")
        return Fault(kind, int(pos), once)
    return Fault(kind, DEFAULT_NUMBER.get(kind, 0), once)


def parse_rates(text: str) -> FaultRates:
    """Parse KYMA_SIM_FAULTS, e.g. "503:0.02,429:0.01,timeout:0.01"."""
    rates = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, rate = item.rpartition(":")
        if not sep:
            raise FaultSyntaxError(f"fault rate {item!r} needs the form kind:probability")
        if make_fault(kind).kind == "gate":  # nobody would release it
            raise FaultSyntaxError("a gate is for a request's header, not a rate")
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
    """Decides each request's fault: an outage window, then the header, then the seeded rate draw."""

    def __init__(self, provider: str, rates: FaultRates, seed: int):
        self.provider = provider
        self.rates = rates
        self.rng = random.Random(seed)
        self.outage: tuple[float, Fault] | None = None  # (until, fault), monotonic seconds
        self._seen: OrderedDict[str, None] = OrderedDict()  # fingerprints `+once` faults have hit

    def pick(self, header: str | None, model: str, messages=None, now: float = 0.0) -> Fault | None:
        """The fault to inject, or None; raises FaultSyntaxError on a bad header."""
        if self.outage is not None and now < self.outage[0]:
            return self.outage[1]
        if header:
            chosen = fault_from_header(header, self.provider, model)
            if chosen == NO_FAULT:
                return None
            if chosen is not None:
                return chosen if not chosen.once or self._first_time(header, messages) else None
        return self.rates.draw(self.rng)

    def _first_time(self, header: str, messages) -> bool:
        """True the first time this header and these messages are seen (remembered, boundedly).

        A trailing assistant message (a continuation's prefill) does not count: continuing an
        answer is a retry of the same request.
        """
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict) \
                and messages[-1].get("role") == "assistant":
            messages = messages[:-1]
        key = hashlib.sha256(json.dumps([header, messages], sort_keys=True, default=str).encode()).hexdigest()
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > ONCE_MEMORY:
            self._seen.popitem(last=False)
        return True
