"""A non-streamed chat request: the attempt loop until one route answers, then settle and record."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterator

import gevent

from kyma.chat.attempts import Attempts
from kyma.chat.call import Prepared, Reply, Served, response_headers
from kyma.chat.plan import Candidate
from kyma.chat.records import base_record, record_failed, record_served
from kyma.chat.usage import completion_text, input_usage_object, meter, meter_input, usage_object
from kyma.errors import InternalError
from kyma.providers.base import FailureKind, UpstreamFailure
from kyma.services.recording import RequestRecord

if TYPE_CHECKING:
    from kyma.runtime import Runtime


def complete(rt: Runtime, prep: Prepared) -> Reply:
    """Serve a non-streamed request through the first route that answers; raise the client's error if none."""
    record = base_record(prep, 200, stream=False)
    attempts = Attempts.for_request(rt, prep)
    try:
        served = _finished(attempts.run(lambda cand: _attempt(rt, prep, attempts, cand), _sleep))
    except BaseException as exc:
        # A bug or a killed greenlet must not leave the hold hanging or the request unlogged.
        record_failed(rt, prep, InternalError(f"internal error: {type(exc).__name__}"), record, attempts)
        raise
    if served is None:
        err = attempts.final_error()
        record_failed(rt, prep, err, record, attempts)
        raise err
    cand, reply = served
    return _completed(rt, prep, cand, reply.body, attempts, record)


def _attempt(rt: Runtime, prep: Prepared, attempts: Attempts, cand: Candidate) -> Iterator[None]:
    """One route's answer, whole. A generator that never yields: the loop is the one streams use,
    and a plain answer has nothing to send while it waits."""
    yield from ()
    adapter = rt.upstreams.adapter(cand.route)
    # The socket timeouts restart with every byte: a trickling upstream still meets the deadline.
    with gevent.Timeout(max(0.1, attempts.deadline - time.monotonic()), UpstreamFailure(
            FailureKind.TIMEOUT, "upstream did not finish before the request deadline")):
        return adapter.complete(cand.route, prep.upstream_body(False, cand), prep.upstream_headers(cand),
                                rt.upstreams.api_key(cand.route), **prep.api_args)


def _sleep(seconds: float) -> Iterator[None]:
    """A plain answer's wait between attempts: there is nothing to send the client meanwhile."""
    time.sleep(seconds)
    yield from ()


def _finished(walk):
    """What an attempt walk returns; a plain request's walk yields nothing on the way."""
    try:
        next(walk)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("a plain request's attempt walk yielded")


def _completed(rt: Runtime, prep: Prepared, cand: Candidate, body: dict, attempts: Attempts,
               record: RequestRecord) -> Reply:
    try:
        if prep.req.api == "embeddings":
            metered = meter_input(cand.model, body.get("usage"), prep.prompt_tokens)
            usage = input_usage_object(metered)
        else:
            metered = meter(cand.model, body.get("usage"), prep.prompt_tokens,
                            completion_text(body["choices"][0]["message"]))
            usage = usage_object(metered)
    except Exception as exc:  # the adapter checked the shape; this is a last line of defence
        err = InternalError(f"internal error metering the answer: {type(exc).__name__}")
        record_failed(rt, prep, err, record, attempts)
        raise err from exc
    overhead = (time.perf_counter() - prep.call.started) * 1000 - attempts.upstream_ms
    served = Served(cand, metered, attempts.tried, overhead)
    record_served(rt, prep, served, record, attempts)
    if prep.req.api == "embeddings":
        out = {"object": "list", "data": body["data"], "model": cand.model.id, "usage": usage}
        return Reply(out, response_headers(prep, served))
    out = dict(body, id=f"chatcmpl-{prep.call.request_id}", model=cand.model.id, usage=usage)
    out.setdefault("object", "chat.completion")
    out.setdefault("created", int(time.time()))
    return Reply(out, response_headers(prep, served))

