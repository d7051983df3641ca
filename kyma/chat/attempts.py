"""The attempt loop, one for plain and streamed requests: candidates in order under the circuit
breaker, an attempt cap and one deadline."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Callable, Generator, Iterator, TypeVar

from kyma.chat.plan import Candidate
from kyma.db import release_connection
from kyma.errors import InvalidRequest, KymaError, Overloaded, RateLimited, UpstreamError, UpstreamTimeout
from kyma.providers.base import UpstreamFailure
from kyma.services.breaker import Verdict
from kyma.services.recording import AttemptRecord

if TYPE_CHECKING:
    from kyma.chat.call import Prepared
    from kyma.runtime import Runtime

BACKOFF_BASE, BACKOFF_CAP = 0.1, 2.0
E = TypeVar("E")  # what an attempt yields while it waits (a stream's keep-alives)
T = TypeVar("T")  # what a serving attempt returns


class Attempts:
    """Yields (candidate, verdict) to try, and turns the failures into the client's error at the end."""

    def __init__(self, breaker, candidates: list[Candidate], *, max_attempts: int, deadline: float,
                 rng=None):
        self.breaker = breaker
        self.candidates = candidates
        self.max_attempts = max_attempts
        self.deadline = deadline  # time.monotonic() value
        self.rng = rng or random  # the module's generator: seeding a new one per request costs
        self.tried = 0
        self.failures: list[UpstreamFailure] = []
        self.outcomes: list[AttemptRecord] = []
        self.upstream_ms = 0.0
        self._blocked_until: list[float] = []
        self._failed_providers: set[str] = set()
        self._stop = False
        self._min_context = 0  # after a context-length error, only larger windows are worth trying

    @classmethod
    def for_request(cls, rt: Runtime, prep: Prepared) -> "Attempts":
        """The attempts of a prepared request, bounded by the settings and its one deadline."""
        s = rt.settings
        deadline = time.monotonic() + s.request_deadline - (time.perf_counter() - prep.call.started)
        # Upstream calls follow: don't hold a (PostgreSQL) connection across them; settling reconnects.
        release_connection()
        return cls(rt.breaker, prep.candidates, max_attempts=s.max_attempts, deadline=deadline)

    def run(self, attempt: Callable[[Candidate], Generator[E, None, T]]) -> Generator[E, None, tuple[Candidate, T] | None]:
        """Try candidates until one serves: (candidate, what its attempt returned), or None when all failed.

        `attempt(candidate)` raises UpstreamFailure to fall back; what it yields while it waits (a
        stream's keep-alives) passes through to the caller.
        """
        for cand, verdict in self:
            t0 = time.perf_counter()
            try:
                result = yield from attempt(cand)
            except UpstreamFailure as failure:
                self.failed(cand, failure, (time.perf_counter() - t0) * 1000)
                continue
            self.succeeded(cand, verdict, (time.perf_counter() - t0) * 1000)
            return cand, result
        return None

    def __iter__(self) -> Iterator[tuple[Candidate, Verdict]]:
        for cand in self.candidates:
            if self._stop or self.tried >= self.max_attempts or time.monotonic() >= self.deadline:
                return
            if cand.model.context_window <= self._min_context:
                continue
            verdict = self.breaker.check(cand.route.key)
            if not verdict.allowed:
                if verdict.retry_at:
                    self._blocked_until.append(verdict.retry_at)
                continue
            if cand.route.provider.name in self._failed_providers:
                self._backoff()
            self.tried += 1
            yield cand, verdict

    def _backoff(self) -> None:
        """Full-jitter backoff before going back to a provider that just failed."""
        cap = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** len(self.failures))
        time.sleep(min(self.rng.uniform(0, cap), max(0.0, self.deadline - time.monotonic())))

    def failed(self, cand: Candidate, failure: UpstreamFailure, latency_ms: float) -> None:
        """Record a failed attempt; a client-side upstream error ends the loop."""
        self.upstream_ms += latency_ms
        self.failures.append(failure)
        self.outcomes.append(AttemptRecord(cand.model.id, cand.route.provider.name, False, failure.status,
                                           failure.public, latency_ms))
        self._failed_providers.add(cand.route.provider.name)
        if failure.is_context_length:
            self._min_context = max(self._min_context, cand.model.context_window)
        elif failure.retryable:
            self.breaker.record_failure(cand.route.key, failure.retry_after)
        else:
            self._stop = True  # the request itself is bad: another route would say the same

    def succeeded(self, cand: Candidate, verdict: Verdict, latency_ms: float) -> None:
        """Record the attempt that served."""
        self.upstream_ms += latency_ms
        self.outcomes.append(AttemptRecord(cand.model.id, cand.route.provider.name, True, 200, None, latency_ms))
        self.breaker.record_success(cand.route.key, verdict)

    def final_error(self) -> KymaError:
        """The error the client gets when no attempt served."""
        if not self.failures:
            wait = max(1, int(min(self._blocked_until) - time.time()) + 1) if self._blocked_until else 30
            return Overloaded("Every provider route for this model is temporarily unavailable "
                              "(circuit open); try again shortly.", headers={"Retry-After": str(wait)})
        last = self.failures[-1]
        if last.is_context_length:
            return InvalidRequest(last.public, code="context_length_exceeded", param="messages")
        if not last.retryable:
            err = InvalidRequest(f"The upstream provider rejected the request: {last.public}",
                                 code=last.code or "upstream_rejected", status=last.status or 400)
            return err
        if all(f.status == 429 for f in self.failures):
            wait = max([f.retry_after or 1 for f in self.failures])
            return RateLimited("Every upstream provider for this model is rate limited; retry shortly.",
                               code="upstream_rate_limited", headers={"Retry-After": str(int(wait + 0.999))})
        if all(f.status in (503, 529) for f in self.failures):
            return Overloaded("Every upstream provider for this model is overloaded; retry shortly.",
                              headers={"Retry-After": "2"})
        if all(f.kind in ("timeout", "connect", "idle") for f in self.failures) and \
                any(f.kind in ("timeout", "idle") for f in self.failures):
            return UpstreamTimeout(f"No upstream answered in time after {self.tried} attempt(s).")
        if time.monotonic() >= self.deadline:
            return UpstreamTimeout(f"The request deadline passed after {self.tried} attempt(s).")
        return UpstreamError(f"Every upstream attempt failed ({self.tried} attempt(s)); last error: {last.public}",
                             headers={"Retry-After": "1"})
