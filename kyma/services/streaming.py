"""Streamed chat: a producer greenlet reads upstream routes; the consumer relays, settles and records.

The producer walks the routes until one yields its first real chunk (fallback happens only before
then), and pushes events onto a queue. The consumer (the response generator) relays chunks as
they arrive, sends keep-alives while the upstream is silent, and settles the credit hold before the
final event. A client that goes away closes the upstream call and is billed for what was produced.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterator

import gevent
from gevent.queue import Empty, Queue

from kyma.errors import KymaError, UpstreamError, UpstreamTimeout
from kyma.providers.base import UpstreamFailure
from kyma.services import ledger
from kyma.services.gateway import (Prepared, Served, base_record, new_attempts, record_failed, record_served,
                                   response_headers, upstream_body, upstream_headers)
from kyma.services.router import Candidate
from kyma.services.usage import completion_text, meter, usage_object

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's code for "client closed request", recorded in the request log


@dataclass
class Chunk:
    """An OpenAI chat.completion.chunk, rewritten for the client (id, model)."""

    data: dict


@dataclass
class KeepAlive:
    """Nothing from upstream for a while: send a comment so proxies keep the connection."""


@dataclass
class Done:
    """The stream finished and was settled; `usage` is the full usage object (cost included)."""

    usage: dict
    finish_reason: str | None


@dataclass
class Failed:
    """The stream failed after the response started: end with an error event."""

    error: KymaError


def _is_lead(chunk: dict) -> bool:
    """A chunk with nothing a client could see yet (role-only or empty delta, no finish, no usage)."""
    if chunk.get("usage"):
        return False
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") or delta.get("content") or delta.get("tool_calls") \
                or delta.get("reasoning_content") or delta.get("reasoning") or delta.get("refusal"):
            return False
    return True


class ChatStream:
    """One streamed request: start it, wait for its first chunk, then iterate its events."""

    def __init__(self, rt, prep: Prepared):
        self.rt = rt
        self.prep = prep
        self.record = base_record(prep, 200, stream=True)
        self.attempts = new_attempts(rt, prep)
        self.queue: Queue = Queue()
        self.served: Served | None = None
        self.upstream = None
        self.finished = False
        self._text: list[str] = []
        self._usage: dict | None = None
        self._finish_chunk: dict | None = None
        self._finish_reason: str | None = None
        self._created = int(time.time())
        self._id = f"chatcmpl-{prep.call.request_id}"
        self._hold_touched = time.monotonic()
        self.producer = gevent.spawn(self._produce)

    # -- producer (its own greenlet; no database work except circuit-breaker updates) --

    def _produce(self) -> None:
        try:
            for cand, verdict in self.attempts:
                if self._try_route(cand, verdict):
                    return
            self.queue.put(("failed", self.attempts.final_error()))
        except gevent.GreenletExit:
            raise
        except BaseException as exc:  # a bug must end the stream with an error, not hang it
            log.exception("stream producer crashed")
            self.queue.put(("failed", KymaError(f"internal error: {type(exc).__name__}")))

    def _try_route(self, cand: Candidate, verdict) -> bool:
        """Stream from one route; True when it started (whatever happens after), False to fall back."""
        s = self.rt.settings
        t0 = time.perf_counter()
        # Hard limits on top of the socket timeouts, which any byte resets (an upstream can send
        # SSE comments forever): content must start within the first-byte limit, and a started
        # stream may last at most KYMA_STREAM_MAX_SECONDS.
        limit = gevent.Timeout(s.first_byte_timeout, UpstreamFailure(
            "timeout", "upstream sent no content before the first-byte timeout"))
        limit.start()
        started, lead, finished, up = False, [], False, None
        try:
            up = self.rt.upstreams.adapter(cand.route).stream(
                cand.route, upstream_body(self.prep, True), upstream_headers(self.prep, cand),
                self.rt.upstreams.api_key(cand.route))
            self.upstream = up
            for chunk in up.chunks:
                if not started:
                    if _is_lead(chunk):
                        lead.append(chunk)
                        continue
                    started = True
                    limit.cancel()
                    limit = gevent.Timeout(s.stream_max_seconds, UpstreamFailure(
                        "idle", f"upstream stream ran past {s.stream_max_seconds:g} s"))
                    limit.start()
                    self.attempts.succeeded(cand, verdict, (time.perf_counter() - t0) * 1000)
                    self.queue.put(("start", cand))
                    for c in lead:
                        self.queue.put(("chunk", c))
                finished = finished or any(ch.get("finish_reason") for ch in chunk.get("choices") or [])
                self.queue.put(("chunk", chunk))
            limit.cancel()
            if not started:
                raise UpstreamFailure("malformed", "upstream stream ended without any content")
            self.queue.put(("end", None))
        except UpstreamFailure as failure:
            limit.cancel()  # before any database work below: a timer must never fire inside it
            if up is not None:
                up.close()
            if not started:
                self.attempts.failed(cand, failure, (time.perf_counter() - t0) * 1000)
                return False
            if failure.kind == "cut" and finished:
                # Finished answer whose [DONE] never came: complete in all but the terminator.
                log.warning("upstream %s ended without [DONE] after finishing", cand.route.key)
                self.queue.put(("end", None))
            else:
                self.queue.put(("error", failure))
        finally:
            limit.cancel()
        return True

    # -- consumer (the response greenlet) --

    def first(self, timeout: float) -> bool:
        """Wait for the stream to start: True started, False still waiting; a failure raises its error."""
        try:
            kind, value = self.queue.peek(timeout=timeout)
        except Empty:
            return False
        if kind == "failed":
            self.queue.get()
            self._fail_unserved(value)
            raise value
        if kind == "start":
            self.queue.get()
            self._start(value)
        return True

    def more_ready(self) -> bool:
        """True when more upstream events are already queued (the writer can batch them)."""
        return not self.queue.empty()

    def headers(self) -> dict:
        """Response headers: X-Kyma-* once a route has started, rate-limit headers always."""
        return response_headers(self.prep, self.served)

    def _start(self, cand: Candidate) -> None:
        overhead = (time.perf_counter() - self.prep.call.started) * 1000 - self.attempts.upstream_ms
        self.served = Served(cand, None, self.attempts.tried, max(0.0, overhead))
        self.record.ttft_ms = (time.perf_counter() - self.prep.call.started) * 1000

    def events(self, keepalive: float) -> Iterator[Chunk | KeepAlive | Done | Failed]:
        """Relay the stream; ends with Done (settled) or Failed. Closing it early bills what was made."""
        try:
            while not self.finished:
                self._keep_hold()
                try:
                    kind, value = self.queue.get(timeout=keepalive)
                except Empty:
                    yield KeepAlive()
                    continue
                if kind == "start":
                    self._start(value)
                elif kind == "chunk":
                    out = self._relay(value)
                    if out is not None:
                        yield Chunk(out)
                elif kind == "end":
                    yield from self._end()
                elif kind == "error":
                    yield Failed(self._fail_served(value))
                elif kind == "failed":
                    self._fail_unserved(value)
                    yield Failed(value)
        except Exception:  # a bug must still end the stream with an error event and a settled hold
            log.exception("stream relay failed")
            err = KymaError("internal error while relaying the stream")
            if self.served is not None:
                self._settle(500, err.message)
            else:
                self._fail_unserved(err)
            yield Failed(err)
        finally:
            self.close()

    def _keep_hold(self) -> None:
        """A stream that outlives a third of the hold's TTL pushes its expiry out, so the reaper
        (which releases the holds of crashed workers) never frees the credit of a live stream."""
        ttl = self.rt.settings.hold_ttl_seconds
        now = time.monotonic()
        if now - self._hold_touched > ttl / 3:
            self._hold_touched = now
            ledger.extend_hold(self.prep.call.request_id, ttl)

    def _relay(self, chunk: dict) -> dict | None:
        """Rewrite a chunk for the client; keep usage (and, if not asked for, the finish chunk) for the end."""
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choices = chunk.get("choices") or []
        for ch in choices:
            self._text.append(completion_text(ch.get("delta") or {}))  # a delta has a message's fields
            if ch.get("finish_reason"):
                self._finish_reason = ch["finish_reason"]
        if not choices:
            return None  # the upstream's usage-only chunk: ours comes at the end, with cost
        out = dict(chunk, id=self._id, model=self.served.candidate.model.id, created=self._created)
        out.pop("usage", None)
        if self._finish_reason and any(ch.get("finish_reason") for ch in choices) \
                and not self.prep.req.client_wants_usage:
            self._finish_chunk = out  # usage rides on the final chunk for clients that did not ask
            return None
        return out

    def _end(self) -> Iterator[Chunk | Done]:
        self._settle(200, None)
        usage = usage_object(self.served.metered)
        base = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                "model": self.served.candidate.model.id}
        if self.prep.req.client_wants_usage:
            yield Chunk({**base, "choices": [], "usage": usage})
        else:
            final = self._finish_chunk or {**base, "choices": [
                {"index": 0, "delta": {}, "finish_reason": self._finish_reason or "stop"}]}
            yield Chunk({**final, "usage": usage})
        yield Done(usage, self._finish_reason)

    def _fail_served(self, failure: UpstreamFailure) -> KymaError:
        """After the start: bill what was produced, record the error, and say what went wrong."""
        err = (UpstreamTimeout if failure.kind == "idle" else UpstreamError)(
            f"The upstream stream failed after it started: {failure.public}")
        self._settle(502, err.message)
        return err

    def _fail_unserved(self, err: KymaError) -> None:
        if not self.finished:
            self.finished = True
            record_failed(self.rt, self.prep, err, self.record, self.attempts)

    def _settle(self, status: int, error: str | None) -> None:
        """Bill what the served route produced (its usage, or the gateway's count) and record it, once."""
        if self.finished:
            return
        self.finished = True
        self.served.metered = meter(self.served.candidate.model, self._usage, self.prep.prompt_tokens,
                                    "".join(self._text))
        self.record.status, self.record.error = status, error
        record_served(self.rt, self.prep, self.served, self.record, self.attempts)

    def close(self) -> None:
        """Stop the upstream call; if the client left early, bill what was produced and record it."""
        if self.producer and not self.producer.dead:
            self.producer.kill(block=False)
        if self.upstream is not None:
            self.upstream.close()
        if self.finished:
            return
        if self.served is not None:
            self._settle(CLIENT_CLOSED, "client closed the stream")
        else:
            self._fail_unserved(KymaError("client closed the stream before it started", status=CLIENT_CLOSED))
