"""The attempt policy: other providers at once, then same-route retries that wait, then other models."""

from __future__ import annotations

import dataclasses

import pytest

from kyma.chat.attempts import Attempts, failure_reason
from kyma.chat.plan import COMPARABLE, NO_FALLBACK, SAME_FAMILY, SAME_MODEL, Candidate
from kyma.config import DATA
from kyma.errors import ContextLengthExceeded
from kyma.providers.base import UpstreamFailure
from kyma.providers.routes import Provider, Route
from kyma.services.breaker import BreakerState, Verdict
from kyma.services.catalog import Catalog
from tests.clock import FakeClock

CATALOG = Catalog.load(DATA / "catalog.json")
MODEL = CATALOG.models[0]
SIBLING = dataclasses.replace(CATALOG.models[1], id="sibling-model")
BIGGER = dataclasses.replace(CATALOG.models[2], id="bigger-model", context_window=MODEL.context_window * 4)


def cand(provider: str, layer: int, model=MODEL) -> Candidate:
    return Candidate(Route(model.id, Provider(provider, f"http://127.0.0.1:1/{provider}"), model.id), model, layer)


class Breaker:
    """A breaker that allows everything and counts failures; `others` adds failures of other requests."""

    def __init__(self):
        self.failures: dict[str, int] = {}
        self.others: dict[str, int] = {}

    def check(self, route: str) -> Verdict:
        n = self.failures.get(route, 0) + self.others.get(route, 0)
        return Verdict(True, dirty=bool(n), failures=n)

    def state(self, route: str) -> BreakerState:
        return BreakerState("closed", self.failures.get(route, 0) + self.others.get(route, 0), None)

    def record_failure(self, route: str, retry_after=None) -> int:
        self.failures[route] = self.failures.get(route, 0) + 1
        return self.failures[route] + self.others.get(route, 0)

    def record_success(self, route: str, verdict) -> None:
        self.failures[route] = 0


def walk(attempts: Attempts, outcomes: dict, *, continuing=None) -> tuple[list, list, object]:
    """Run the loop: outcomes maps provider name → list of failures (None = serve) in order of tries."""
    tried, paused = [], []

    def attempt(c: Candidate):
        yield from ()
        tried.append(c.route.provider.name)
        result = outcomes.get(c.route.provider.name, [None]).pop(0) if outcomes.get(c.route.provider.name) else None
        if result is not None:
            raise result
        return "answer"

    def pause(seconds: float):
        paused.append(round(seconds, 3))
        attempts.clock.sleep(seconds)  # the loop pauses on this clock, not the real one
        yield from ()

    loop = attempts.run(attempt, pause, continuing=continuing)
    try:
        while True:
            next(loop)
    except StopIteration as stop:
        return tried, paused, stop.value


def attempts_for(*cands: Candidate, breaker=None, **kw) -> Attempts:
    clock = FakeClock()
    return Attempts(breaker or Breaker(), list(cands), max_attempts=kw.pop("max_attempts", 8),
                    deadline=clock() + 60, clock=clock, **kw)


def http(status: int, retry_after=None, retryable=True, code=None) -> UpstreamFailure:
    return UpstreamFailure("status", f"upstream answered HTTP {status}", status=status, retry_after=retry_after,
                           retryable=retryable, code=code)


def test_another_provider_of_the_same_model_serves_at_once():
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("beta", SAME_MODEL), cand("gamma", SAME_FAMILY, SIBLING))
    tried, paused, (served, _) = walk(a, {"alpha": [http(500)]})
    assert tried == ["alpha", "beta"] and paused == [] and served.route.provider.name == "beta"


def test_a_429_is_retried_on_the_same_route_after_its_retry_after_before_any_other_model():
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("gamma", SAME_FAMILY, SIBLING))
    tried, paused, (served, _) = walk(a, {"alpha": [http(429, retry_after=2)]})
    assert tried == ["alpha", "alpha"] and paused == [2.0]
    assert served.route.provider.name == "alpha" and served.layer == NO_FALLBACK
    assert a.tried == 2 and [o.role for o in a.outcomes] == ["", "retry"]


def test_a_500_is_retried_after_a_short_jittered_backoff():
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("gamma", SAME_FAMILY, SIBLING))
    tried, paused, _ = walk(a, {"alpha": [http(500)]})
    assert tried == ["alpha", "alpha"] and 0.15 < paused[0] <= 0.4


def test_every_route_of_the_model_first_then_the_one_ready_soonest_is_retried():
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("beta", SAME_MODEL), cand("gamma", SAME_FAMILY, SIBLING))
    tried, paused, (served, _) = walk(a, {"alpha": [http(429, retry_after=3)], "beta": [http(429, retry_after=1)]})
    assert tried == ["alpha", "beta", "beta"] and served.route.provider.name == "beta"
    assert paused == [1.0]


def test_retries_are_counted_per_request_so_the_fallback_models_stay_within_the_cap():
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("beta", SAME_MODEL), cand("gamma", SAME_FAMILY, SIBLING),
                     max_attempts=4)
    tried, _, (served, _) = walk(a, {"alpha": [http(500), http(500)], "beta": [http(500), http(500)]})
    assert tried[:2] == ["alpha", "beta"] and tried[2] in ("alpha", "beta")  # whichever backoff ends first
    assert tried[3:] == ["gamma"] and served.layer == SAME_FAMILY


def test_a_retry_after_longer_than_the_cap_falls_back_instead():
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("gamma", SAME_FAMILY, SIBLING), retry_after_max=5)
    tried, paused, (served, _) = walk(a, {"alpha": [http(429, retry_after=30)]})
    assert tried == ["alpha", "gamma"] and served.layer == SAME_FAMILY


def test_retries_stop_at_the_configured_count():
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("gamma", SAME_FAMILY, SIBLING), route_retries=2)
    tried, _, (served, _) = walk(a, {"alpha": [http(503), http(503), http(503)]})
    assert tried == ["alpha", "alpha", "alpha", "gamma"] and served.route.provider.name == "gamma"
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("gamma", SAME_FAMILY, SIBLING), route_retries=0)
    tried, _, _ = walk(a, {"alpha": [http(503)]})
    assert tried == ["alpha", "gamma"]


def test_a_retry_is_skipped_when_other_requests_failed_on_the_route_meanwhile():
    breaker = Breaker()
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("gamma", SAME_FAMILY, SIBLING), breaker=breaker)

    def pause_while_others_fail(seconds):
        breaker.others["alpha/" + MODEL.id] = 3  # an outage: fall back at once, one failed attempt only
        yield from ()

    tried = []

    def attempt(c):
        yield from ()
        tried.append(c.route.provider.name)
        if c.route.provider.name == "alpha":
            raise http(500)
        return "answer"

    loop = a.run(attempt, pause_while_others_fail)
    try:
        while True:
            next(loop)
    except StopIteration:
        pass
    assert tried == ["alpha", "gamma"]


def test_failures_a_moment_cannot_cure_are_not_retried_on_the_same_route():
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("gamma", SAME_FAMILY, SIBLING))
    tried, paused, _ = walk(a, {"alpha": [http(401)]})  # a broken key: another route, never the same
    assert tried == ["alpha", "gamma"] and paused == []
    slow = UpstreamFailure("first_token", "upstream sent no content within 10 s")
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("gamma", SAME_FAMILY, SIBLING))
    tried, _, _ = walk(a, {"alpha": [slow]})
    assert tried == ["alpha", "gamma"]


def test_a_request_shaped_error_ends_the_loop():
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("beta", SAME_MODEL), cand("gamma", SAME_FAMILY, SIBLING))
    tried, _, served = walk(a, {"alpha": [http(400, retryable=False)]})
    assert tried == ["alpha"] and served is None and a.final_error().status == 400


def test_a_context_length_error_goes_only_to_bigger_windows_reported_as_layer_3():
    too_long = http(400, retryable=False, code="context_length_exceeded")
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("beta", SAME_MODEL), cand("gamma", SAME_FAMILY, SIBLING),
                     cand("delta", COMPARABLE, BIGGER))
    tried, _, (served, _) = walk(a, {"alpha": [too_long]})
    assert tried == ["alpha", "delta"] and served.layer == COMPARABLE and served.model.id == "bigger-model"


def test_a_context_length_error_with_no_bigger_window_is_the_clients_error():
    too_long = http(400, retryable=False, code="context_length_exceeded")
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("beta", SAME_MODEL))
    tried, _, served = walk(a, {"alpha": [too_long]})
    err = a.final_error()
    assert tried == ["alpha"] and served is None
    assert isinstance(err, ContextLengthExceeded) and (err.status, err.code) == (400, "context_length_exceeded")


def test_the_attempt_cap_counts_retries():
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("gamma", SAME_FAMILY, SIBLING), max_attempts=2)
    tried, _, served = walk(a, {"alpha": [http(500), http(500)]})
    assert tried == ["alpha", "alpha"] and served is None and a.tried == 2


def test_continuations_try_only_what_can_continue_and_a_rejection_is_not_final():
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("beta", SAME_MODEL), cand("gamma", SAME_FAMILY, SIBLING))
    rejected = http(400, retryable=False, code="prefill_unsupported")
    tried, paused, (served, _) = walk(a, {"beta": [rejected]}, continuing=lambda c: c.route.provider.name != "alpha")
    assert tried == ["beta", "gamma"] and paused == [] and served.route.provider.name == "gamma"
    assert [o.role for o in a.outcomes] == ["continuation", "continuation"]


def test_a_retry_skipped_for_an_outage_claims_no_trial_of_the_route():
    """Deciding to skip must not claim the open route's one trial and then walk away from it."""
    claimed = []

    class Open(Breaker):
        def check(self, route):
            claimed.append(route)
            return super().check(route)

    breaker = Open()
    a = attempts_for(cand("alpha", NO_FALLBACK), cand("gamma", SAME_FAMILY, SIBLING), breaker=breaker)

    def attempt(c):
        yield from ()
        if c.route.provider.name == "alpha":
            raise http(429, retry_after=1)
        return "answer"

    def pause(seconds):
        breaker.others["alpha/" + MODEL.id] = 2  # another request's 429 on the route meanwhile
        yield from ()

    loop = a.run(attempt, pause)
    try:
        while True:
            next(loop)
    except StopIteration:
        pass
    assert claimed.count("alpha/" + MODEL.id) == 1  # the first try only, never for the skipped retry


def test_a_client_that_leaves_mid_attempt_still_leaves_the_attempt_on_record():
    a = attempts_for(cand("alpha", NO_FALLBACK))

    def attempt(c):
        yield "waiting"
        return "answer"

    loop = a.run(attempt, lambda s: iter(()))
    assert next(loop) == "waiting"
    loop.close()
    assert [(o.provider, o.ok, o.status) for o in a.outcomes] == [("alpha", False, 499)]


@pytest.mark.parametrize("failure, label", [
    (http(503), "http_503"),
    (UpstreamFailure("status", "upstream reported an error mid-stream"), "http_error"),
    (UpstreamFailure("idle", "upstream stream timed out"), "idle"),
    (UpstreamFailure("connect", "refused"), "connect"),
])
def test_a_failures_metric_label_names_its_status_or_its_kind(failure, label):
    assert failure_reason(failure) == label
