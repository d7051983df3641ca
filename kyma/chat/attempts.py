"""The attempt loop, one for plain and streamed requests, and the policy that orders its attempts.

Under one deadline and an attempt cap, in this order:
1. the requested model's routes, each once, at once (another provider is the fastest rescue);
2. a route that failed in a way a moment may cure (a 429, a 5xx, a timeout, a dropped
   connection) again, after a short backoff with jitter or the upstream's Retry-After when it
   fits the deadline and KYMA_RETRY_AFTER_MAX_SECONDS: the soonest ready first, at most
   KYMA_ROUTE_RETRIES retries in all, so the fallback models stay within the attempt cap; a retry
   is skipped when other requests failed on the route meanwhile (an outage, not a blip);
3. sibling models, then comparable ones (fallback layers 2 and 3).
A request-shaped error (400, 413, 422, a content policy) ends the loop: every route would refuse
it. A context-length error is tried only on models with a larger window, reported as layer 3.
Every attempt, retries and continuations included, counts in X-Kyma-Attempts and the request log.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generator, Iterator, TypeVar

from kyma.chat.plan import COMPARABLE, SAME_MODEL, Candidate
from kyma.db import release_connection
from kyma.errors import (ContextLengthExceeded, InvalidRequest, KymaError, Overloaded, RateLimited, UpstreamError,
                         UpstreamTimeout)
from kyma.providers.base import SLOW_KINDS, FailureKind, UpstreamFailure
from kyma.services.breaker import Verdict
from kyma.services.recording import AttemptRecord

if TYPE_CHECKING:
    from kyma.chat.call import Prepared
    from kyma.runtime import Runtime

BACKOFF_BASE, BACKOFF_CAP = 0.1, 2.0  # before going back to a provider that failed, for another model
RETRY_BACKOFF = 0.4  # before retrying the same route: 0.2–0.4 s the first time, doubling after
MIN_ATTEMPT_SECONDS = 1.0  # a retry that would start closer than this to the deadline is not worth it
E = TypeVar("E")  # what an attempt yields while it waits (a stream's keep-alives)
T = TypeVar("T")  # what a serving attempt returns
Pause = Callable[[float], Generator]  # waits that many seconds, yielding what the caller sends meanwhile


@dataclass
class _Retry:
    """A route to try again once `ready_at` (monotonic) comes, unless others failed on it meanwhile."""

    cand: Candidate
    ready_at: float
    failures: int  # the route's consecutive failures right after ours (0: unknown)


class Attempts:
    """Orders the attempts of one request and turns their failures into the client's error at the end."""

    def __init__(self, breaker, candidates: list[Candidate], *, max_attempts: int, deadline: float,
                 route_retries: int = 1, retry_after_max: float = 5.0, rng=None,
                 clock: Callable[[], float] = time.monotonic):
        self.breaker = breaker
        self.clock = clock  # monotonic seconds; tests pass a clock they move themselves
        self.candidates = candidates
        self.max_attempts = max_attempts
        self.deadline = deadline  # a clock() value
        self.route_retries = route_retries
        self.retry_after_max = retry_after_max
        self.rng = rng or random  # the module's generator: seeding a new one per request costs
        self.tried = 0
        self.failures: list[UpstreamFailure] = []
        self.outcomes: list[AttemptRecord] = []
        self.upstream_ms = 0.0
        self._blocked_until: list[float] = []
        self._failed_providers: set[str] = set()
        self._retries: list[_Retry] = []  # routes waiting for a retry
        self._retried = 0  # same-route retries made
        self._stop = False
        self._min_context = 0  # after a context-length error, only larger windows are worth trying

    @classmethod
    def for_request(cls, rt: Runtime, prep: Prepared, clock: Callable[[], float] = time.monotonic) -> "Attempts":
        """The attempts of a prepared request, bounded by the settings and its one deadline."""
        s = rt.settings
        deadline = clock() + s.request_deadline - (time.perf_counter() - prep.call.started)
        # Upstream calls follow: don't hold a (PostgreSQL) connection across them; settling reconnects.
        release_connection()
        return cls(rt.breaker, prep.candidates, max_attempts=s.max_attempts, deadline=deadline,
                   route_retries=s.route_retries, retry_after_max=s.retry_after_max_seconds, clock=clock)

    def run(self, attempt: Callable[[Candidate], Generator[E, None, T]], pause: Pause, *,
            continuing: Callable[[Candidate], bool] | None = None,
            ) -> Generator[E, None, tuple[Candidate, T] | None]:
        """Try candidates until one serves: (candidate, what its attempt returned), or None when all failed.

        `attempt(candidate)` raises UpstreamFailure to fall back; what it yields while it waits (a
        stream's keep-alives) passes through, and so does what `pause` yields between attempts.
        With `continuing`, only the candidates it accepts are tried, once each, as continuations.
        """
        steps = self._continuations(continuing) if continuing else self._steps()
        for step in steps:
            if isinstance(step, float):
                yield from pause(step)
                continue
            cand, verdict, label = step
            role = "continuation" if continuing else label
            t0 = time.perf_counter()
            try:
                result = yield from attempt(cand)
            except UpstreamFailure as failure:
                self.failed(cand, failure, (time.perf_counter() - t0) * 1000, role)
                continue
            except GeneratorExit:  # the client left mid-attempt: the attempt still happened
                self.outcomes.append(AttemptRecord(cand.model.id, cand.route.provider.name, False, 499,
                                                   "client closed the request",
                                                   (time.perf_counter() - t0) * 1000, role, reason="client_closed"))
                raise
            self.succeeded(cand, verdict, (time.perf_counter() - t0) * 1000, role)
            return cand, result
        return None

    # -- the order of attempts --

    def _steps(self) -> Iterator[tuple[Candidate, Verdict, str] | float]:
        """Candidates to try (with "retry" for a same-route retry), and seconds to wait in between."""
        for cand in self.candidates:
            if cand.layer <= SAME_MODEL and (step := self._admit(cand)):
                yield step
        while self._retries and self._retried < self.route_retries and not self._exhausted():
            retry = min(self._retries, key=lambda r: r.ready_at)
            self._retries.remove(retry)
            wait = retry.ready_at - self.clock()
            if wait > 0:
                yield wait
            if step := self._admit(retry.cand, retry):
                self._retried += 1
                yield step
        for cand in self.candidates:
            if cand.layer <= SAME_MODEL or self._exhausted():
                continue
            if cand.route.provider.name in self._failed_providers:
                yield self._backoff()  # before the breaker check: a probe it claims is tried at once
            if step := self._admit(cand):
                yield step

    def _continuations(self, accepts: Callable[[Candidate], bool]) -> Iterator[tuple[Candidate, Verdict, str]]:
        for cand in self.candidates:
            if accepts(cand) and (step := self._admit(cand)):
                yield step

    def _admit(self, cand: Candidate, retry: _Retry | None = None) -> tuple[Candidate, Verdict, str] | None:
        """The candidate, if the budget, the context window and the breaker let it be tried now."""
        if self._exhausted() or cand.model.context_window <= self._min_context:
            return None
        if retry is not None and retry.failures and self.breaker.state(cand.route.key).failures > retry.failures:
            return None  # others failed on this route since: an outage, not a blip; fall back at once
        verdict = self.breaker.check(cand.route.key)  # may claim the one trial of an open route
        if not verdict.allowed:
            if verdict.retry_at:
                self._blocked_until.append(verdict.retry_at)
            return None
        if self._min_context:
            cand = dataclasses.replace(cand, layer=COMPARABLE)  # a bigger window is never a silent switch
        self.tried += 1
        return cand, verdict, "retry" if retry is not None else ""

    def _exhausted(self) -> bool:
        return self._stop or self.tried >= self.max_attempts or self.clock() >= self.deadline

    def _backoff(self) -> float:
        """Full-jitter backoff before going back to a provider that just failed."""
        cap = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** len(self.failures))
        return min(self.rng.uniform(0, cap), max(0.0, self.deadline - self.clock()))

    def _schedule_retry(self, cand: Candidate, failure: UpstreamFailure, failures: int) -> None:
        """Queue a same-route retry of one of the requested model's routes, when one is worth it."""
        if cand.layer > SAME_MODEL or not failure.transient or self._retried >= self.route_retries:
            return
        if failure.retry_after is not None:
            wait = failure.retry_after
        else:
            step = RETRY_BACKOFF * 2 ** self._retried
            wait = step / 2 + self.rng.uniform(0, step / 2)
        if wait > self.retry_after_max or self.clock() + wait > self.deadline - MIN_ATTEMPT_SECONDS:
            return  # the upstream needs longer than this request can give it: fall back instead
        self._retries.append(_Retry(cand, self.clock() + wait, failures))

    # -- outcomes --

    def failed(self, cand: Candidate, failure: UpstreamFailure, latency_ms: float, role: str = "") -> None:
        """Record a failed attempt; a client-side upstream error ends the loop."""
        self.upstream_ms += latency_ms
        self.failures.append(failure)
        self.outcomes.append(AttemptRecord(cand.model.id, cand.route.provider.name, False, failure.status,
                                           failure.public, latency_ms, role, reason=failure_reason(failure)))
        self._failed_providers.add(cand.route.provider.name)
        if failure.is_context_length:
            self._min_context = max(self._min_context, cand.model.context_window)
        elif failure.retryable:
            failures = self.breaker.record_failure(cand.route.key, failure.retry_after)
            if role != "continuation":
                self._schedule_retry(cand, failure, failures)
        elif role != "continuation":
            self._stop = True  # the request itself is bad: another route would say the same

    def succeeded(self, cand: Candidate, verdict: Verdict, latency_ms: float, role: str = "") -> AttemptRecord:
        """Record the attempt that served; its record, for the tokens and cost known later."""
        self.upstream_ms += latency_ms
        record = AttemptRecord(cand.model.id, cand.route.provider.name, True, 200, None, latency_ms, role)
        self.outcomes.append(record)
        self.breaker.record_success(cand.route.key, verdict)
        return record

    def broke(self, cand: Candidate, failure: UpstreamFailure) -> None:
        """A served stream broke after content reached the client: it counts against the route."""
        self.failures.append(failure)
        self._failed_providers.add(cand.route.provider.name)
        self.breaker.record_failure(cand.route.key, failure.retry_after)

    def final_error(self) -> KymaError:
        """The error the client gets when no attempt served."""
        if not self.failures:
            wait = max(1, int(min(self._blocked_until) - time.time()) + 1) if self._blocked_until else 30
            return Overloaded("Every provider route for this model is temporarily unavailable "
                              "(circuit open); try again shortly.", headers={"Retry-After": str(wait)})
        last = self.failures[-1]
        if last.is_context_length:
            return ContextLengthExceeded(last.public, param="messages")
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
        if all(f.kind in SLOW_KINDS or f.kind is FailureKind.CONNECT for f in self.failures) and \
                any(f.kind in SLOW_KINDS for f in self.failures):
            return UpstreamTimeout(f"No upstream answered in time after {self.tried} attempt(s).")
        if self.clock() >= self.deadline:
            return UpstreamTimeout(f"The request deadline passed after {self.tried} attempt(s).")
        return UpstreamError(f"Every upstream attempt failed ({self.tried} attempt(s)); last error: {last.public}",
                             headers={"Retry-After": "1"})


def failure_reason(failure: UpstreamFailure) -> str:
    """A failure's kind as a metric label: connect, timeout, first_token, malformed, cut, idle, or http_<status>."""
    if failure.kind is FailureKind.STATUS:
        return f"http_{failure.status}" if failure.status else "http_error"
    return failure.kind
