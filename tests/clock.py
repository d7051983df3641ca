"""A clock for tests of code that takes one: no check races the real clock."""

from __future__ import annotations


class FakeClock:
    """Monotonic seconds that pass only when someone sleeps on this clock."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
