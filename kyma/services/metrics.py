"""Prometheus metrics: what every finished request adds, and what a scrape reads from the stores.

Off by default: the recorder is then a no-op and prometheus_client is not even imported. On
(KYMA_METRICS=on), a finished RequestRecord passes through observe() once, after its commit; open
streams are counted as they start and end; circuit states and outstanding holds are read when
/metrics is scraped, never per request. Under gunicorn each worker writes its values to files in
PROMETHEUS_MULTIPROC_DIR (see kyma.gunicorn_hooks) and a scrape adds every worker's up.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Callable, Iterable

from kyma.services.breaker import STATES_IN_EFFECT

if TYPE_CHECKING:
    from kyma.services.recording import RequestRecord

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
OTHER = "other"  # the model label of a name that is no catalog id or alias (a client's name is any string)


class NullRecorder:
    """Metrics off: every call returns at once."""

    def observe(self, record: RequestRecord) -> None:
        pass

    def stream_opened(self) -> None:
        pass

    def stream_closed(self) -> None:
        pass


class Recorder:
    """Metrics on: counters and histograms a finished request adds to, and the open-stream gauge."""

    def __init__(self, known_models: Iterable[str]):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()  # single-process scrapes read it; multiprocess ones read the files
        self.known_models = frozenset(known_models)
        r = self.registry
        self.requests = Counter("kyma_requests", "API requests by endpoint, model, provider and HTTP status.",
                                ("endpoint", "model", "provider", "status"), registry=r)
        self.latency = Histogram("kyma_request_duration_seconds", "Time from a request's arrival to its end.",
                                 ("endpoint", "model"), buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("kyma_time_to_first_token_seconds", "Time to a stream's first content.",
                              ("endpoint", "model"), buckets=TTFT_BUCKETS, registry=r)
        self.attempts = Counter("kyma_upstream_attempts", "Upstream attempts by provider, model and outcome.",
                                ("provider", "model", "outcome"), registry=r)
        self.failures = Counter("kyma_upstream_failures", "Failed upstream attempts by provider, model and reason.",
                                ("provider", "model", "reason"), registry=r)
        self.fallback = Counter("kyma_fallback_layer", "Served requests by fallback layer (0: none was needed).",
                                ("layer",), registry=r)
        self.tokens = Counter("kyma_tokens", "Tokens of served requests by model and kind.", ("model", "kind"),
                              registry=r)
        self.credits = Counter("kyma_credits_spent_usd", "Credit charged to accounts, in USD.", ("model",),
                               registry=r)
        self.upstream_cost = Counter("kyma_upstream_cost_usd", "What upstream attempts cost, in USD.",
                                     ("provider",), registry=r)
        # livesum: the sum over workers alive now; a dead worker's streams are gone with it.
        self._children: dict[tuple, object] = {}
        self.open_streams = Gauge("kyma_open_streams", "Streams in progress.", registry=r,
                                  multiprocess_mode="livesum")

    def _of(self, metric, *labels: str):
        """metric.labels(*labels), kept: finding a labelled child costs more than counting on it."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def model_label(self, name: str | None) -> str:
        """A catalog model or alias as itself; anything else as "other" (labels must stay few)."""
        if not name:
            return ""
        return name if name in self.known_models else OTHER

    def observe(self, r: RequestRecord) -> None:
        """Add one finished request."""
        of = self._of
        model = self.model_label(r.model_served or r.model_requested)
        of(self.requests, r.endpoint, model, r.provider or "", str(r.status)).inc()
        of(self.latency, r.endpoint, model).observe(r.latency_ms / 1000)
        if r.ttft_ms is not None:
            of(self.ttft, r.endpoint, model).observe(r.ttft_ms / 1000)
        for o in r.outcomes:
            of(self.attempts, o.provider, o.model, "ok" if o.ok else "failed").inc()
            if not o.ok:
                of(self.failures, o.provider, o.model, o.reason or "unknown").inc()
            if o.cost_micros:
                of(self.upstream_cost, o.provider).inc(o.cost_micros / 1e6)
        if r.model_served is None:
            return
        of(self.fallback, str(r.fallback_layer)).inc()
        of(self.tokens, model, "prompt").inc(r.prompt_tokens)
        of(self.tokens, model, "completion").inc(r.completion_tokens)
        if r.cached_tokens:
            of(self.tokens, model, "cached").inc(r.cached_tokens)
        if r.cost_micros:
            of(self.credits, model).inc(r.cost_micros / 1e6)

    def stream_opened(self) -> None:
        self.open_streams.inc()

    def stream_closed(self) -> None:
        self.open_streams.dec()


_recorder: NullRecorder | Recorder = NullRecorder()


def configure(on: bool, known_models: Iterable[str] = ()) -> NullRecorder | Recorder:
    """Turn metrics on or off for this process (create_app, once per app)."""
    global _recorder
    if on and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # a command run by hand has no master to make it
        os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    _recorder = Recorder(known_models) if on else NullRecorder()
    return _recorder


def observe(record: RequestRecord) -> None:
    """Add a finished request to the metrics (nothing when they are off)."""
    _recorder.observe(record)


def stream_opened() -> None:
    _recorder.stream_opened()


def stream_closed() -> None:
    _recorder.stream_closed()


class StoreCollector:
    """Values read at scrape time: each route's circuit state, and the credit holds still open."""

    def __init__(self, routes: Callable[[], Iterable[tuple[str, str, str]]], circuit_state: Callable[[str], object],
                 holds: Callable[[], tuple[int, int]]):
        self.routes = routes  # () -> (route key, provider, model) for every route
        self.circuit_state = circuit_state  # route key -> BreakerState
        self.holds = holds  # () -> (open holds, micro-dollars they reserve)

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        circuits = GaugeMetricFamily("kyma_circuit_state", "1 for each route's current circuit state.",
                                     labels=("route", "provider", "model", "state"))
        now = time.time()
        for key, provider, model in self.routes():
            current = self.circuit_state(key).in_effect(now)
            for state in STATES_IN_EFFECT:
                circuits.add_metric((key, provider, model, state), 1.0 if state == current else 0.0)
        yield circuits
        count, micros = self.holds()
        yield GaugeMetricFamily("kyma_holds_outstanding", "Credit holds not yet settled or released.", value=count)
        yield GaugeMetricFamily("kyma_holds_outstanding_usd", "Credit the open holds reserve, in USD.",
                                value=micros / 1e6)


def exposition(store: StoreCollector) -> tuple[bytes, str]:
    """The text a scrape gets: every worker's values (or this process's) and the stores' values."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(_recorder.registry) if isinstance(_recorder, Recorder) else b""
    stores = CollectorRegistry()
    stores.register(store)
    return body + generate_latest(stores), CONTENT_TYPE_LATEST
