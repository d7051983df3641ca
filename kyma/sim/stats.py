"""Per-provider request counters, so gateway tests can prove how many attempts reached a provider."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SimStats:
    """Requests served by this simulated provider, by fault and by model."""

    name: str
    requests: int = 0
    by_fault: Counter = field(default_factory=Counter)
    by_model: Counter = field(default_factory=Counter)
    last_request: dict | None = None

    def record(self, model: str, fault: str, body: dict, headers: dict) -> None:
        """Count one chat completions request (fault 'none' when served cleanly)."""
        self.requests += 1
        self.by_fault[fault] += 1
        self.by_model[model] += 1
        self.last_request = {"body": body, "headers": headers}

    def reset(self) -> None:
        """Forget every count."""
        self.requests = 0
        self.by_fault.clear()
        self.by_model.clear()
        self.last_request = None

    def as_json(self) -> dict:
        """The /sim/stats payload."""
        return {"name": self.name, "requests": self.requests, "by_fault": dict(self.by_fault),
                "by_model": dict(self.by_model), "last_request": self.last_request}
