"""Streamed chat in one greenlet: walk the routes, relay chunks, send keep-alives, settle and record.

One generator does it all, in the greenlet that writes the response. Every wait for the
upstream's answer is bounded by the next thing due (a keep-alive, the first-content deadline, the
stream's total limit, the idle limit), so no second greenlet or queue is needed between the
upstream socket and the client's: the first chunk goes out with no hand-off, and each relayed
chunk costs no switch. (Connecting and sending the request keep their own timeouts.)
Before the first content chunk a failure is invisible (the next candidate is tried); after it, a
broken answer is continued by a candidate that accepts an assistant prefill, or ends with an error
event. A client that goes away closes the upstream call and is billed for what was produced.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING, Callable, Iterator

from kyma.chat.answer import Answer
from kyma.chat.attempts import Attempts
from kyma.chat.call import Prepared, Served, output_cap, response_headers
from kyma.chat.events import Chunk, Done, Failed, KeepAlive, Started, Unserved, is_lead
from kyma.chat.plan import Candidate
from kyma.chat.records import base_record, record_failed, record_served
from kyma.chat.usage import meter, usage_object
from kyma.errors import InternalError, KymaError, UpstreamError, UpstreamTimeout
from kyma.providers.base import FailureKind, UpstreamFailure
from kyma.services import ledger, metrics
from kyma.services.recording import AttemptRecord

if TYPE_CHECKING:
    from kyma.runtime import Runtime

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's code for "client closed request", recorded in the request log


class ChatStream:
    """One streamed request: start it, wait for its first chunk, then iterate its events.

    `keepalive` is the longest the client goes without an event (KeepAlive fills the silence);
    by default KYMA_KEEPALIVE_SECONDS (the playground ticks faster, to notice a Stop).
    """

    def __init__(self, rt: Runtime, prep: Prepared, keepalive: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rt = rt
        self.prep = prep
        self.clock, self.sleep = clock, sleep  # tests pass a clock that moves only when they say
        self.record = base_record(prep, 200, stream=True)
        self.attempts = Attempts.for_request(rt, prep, clock)
        self.served: Served | None = None
        self.upstream = None
        self.finished = False
        self.ready = False  # first() saw content (False: a keep-alive interval passed first)
        self.keepalive = rt.settings.keepalive_seconds if keepalive is None else keepalive
        self.answer: Answer | None = None  # once a route has started
        self._hold_touched = self.clock()
        self._deadline = 0.0  # the first-byte limit, then the stream's total limit (set per phase)
        self._last_event = self.clock()
        self._burst = False  # events follow at once (held-back lead chunks, the final chunk and Done)
        self._relayed = 0  # content chunks yielded by the relay, continuations' included
        self._stream_until = 0.0  # the started stream's total limit
        self._current: Candidate | None = None  # the candidate streaming now (a continuation's, after one)
        self._serving_record: AttemptRecord | None = None
        self._attempt_prompt_tokens = prep.prompt_tokens  # what the current attempt was sent
        self._breaks: list[tuple[Candidate, UpstreamFailure]] = []
        self._notes: list[str] = []
        self._skipped = 0  # malformed events skipped, every attempt together
        self._run = self._walk()
        metrics.stream_opened()  # closed once, when the stream is recorded (settled or failed)

    # -- the upstream side: routes in order until one produces content, then relay it --

    def _walk(self):
        opened = yield from self.attempts.run(self._open, self._pause)
        if opened is None:
            yield Unserved(self.attempts.final_error())
            return
        cand, (lead, first, chunks) = opened
        self._start(cand)
        yield Started()
        self._stream_until = self.clock() + self.rt.settings.stream_max_seconds
        self._burst = True  # the lead chunks and the first content chunk go out in one write
        for c in lead:
            out = self.answer.relay(c)
            if out is not None:
                yield Chunk(out)
        self._burst = False
        broke = yield from self._relay_rest(first, chunks)
        while broke is not None:
            self._broke(cand, broke)
            if self.answer.tokens() >= self._token_budget():  # all it may use: a "length" finish
                self.answer.finish_reason = "length"
                break
            opened = None
            if self._continuable(broke):
                # A long answer may break after the request's deadline: continuing gets a deadline of
                # its own, within the stream's total limit.
                budget = self.clock() + self.rt.settings.request_deadline
                self.attempts.deadline = max(self.attempts.deadline, min(budget, self._stream_until))
                opened = yield from self.attempts.run(self._open_continuation, self._pause,
                                                      continuing=self._can_continue)
            if opened is None:
                yield from self._give_up(cand, broke)
                return
            cand, (_lead, first, chunks) = opened  # its lead chunks carry a role the client already has
            self._continued(cand)
            broke = yield from self._relay_rest(first, chunks)
        yield from self._end()

    def _open(self, cand: Candidate):
        """Start the request's stream on one route and wait for its first content (see _open_with)."""
        return (yield from self._open_with(cand, self.prep.upstream_body(True, cand)))

    def _open_continuation(self, cand: Candidate):
        """Ask one route to go on with the answer the client has so far, sent as an assistant prefill.

        A conversation that already ends with the client's own prefill gets the delivered text
        appended to it (two assistant messages in a row would be a new turn); the token budget is
        what the answer has left of max_tokens, or of the starting model's output limit.
        """
        provider = cand.route.provider
        body = self.prep.upstream_body(True, cand)
        messages = list(body["messages"])
        last = messages[-1] if messages else {}
        prefill = self.answer.prefill()
        if last.get("role") == "assistant" and isinstance(last.get("content"), str) and not last.get("tool_calls"):
            messages[-1] = {**last, "content": last["content"] + prefill, **dict(provider.prefill_message)}
        else:
            messages.append({"role": "assistant", "content": prefill, **dict(provider.prefill_message)})
        body["messages"] = messages
        body.update(dict(provider.prefill_params))
        body["max_tokens"] = output_cap(cand.model, self._token_budget() - self.answer.tokens())
        return (yield from self._open_with(cand, body))

    def _open_with(self, cand: Candidate, body: dict):
        """Start the stream on one route and wait for its first content chunk.

        Returns (lead chunks, the first content chunk, the rest as an iterator); raises
        UpstreamFailure to fall back. The headers must come within KYMA_FIRST_BYTE_TIMEOUT and the
        first content within KYMA_FIRST_TOKEN_TIMEOUT of the attempt's start, keep-alive comments
        to the client or not: an upstream that answers at once and then thinks for ever (or sends
        only comments) is abandoned for the next candidate.
        """
        s = self.rt.settings
        started = self.clock()
        # Never past the request's (or a continuation's) deadline, nor the stream's total limit.
        bound = min(self.attempts.deadline, self._stream_until or float("inf"))
        first_token_by = min(started + s.first_token_timeout, bound)
        headers_by = min(started + s.first_byte_timeout, first_token_by)
        # Headers that miss the first-token limit are a slow first token (not retried on the same route).
        headers_kind = FailureKind.FIRST_TOKEN if headers_by == first_token_by else FailureKind.TIMEOUT
        self._deadline = headers_by
        up = None
        try:
            up = self.rt.upstreams.adapter(cand.route).stream(
                cand.route, body, self.prep.upstream_headers(cand), self.rt.upstreams.api_key(cand.route),
                **self.prep.api_args)
            self.upstream = up
            while not up.wait_headers(self._wait()):
                self._check(headers_kind)
                if self._keepalive_due():
                    yield KeepAlive()
            self._deadline = first_token_by
            chunks = up.chunks(self._wait)
            lead = []
            for chunk in chunks:
                if chunk is not None and not is_lead(chunk):
                    # Content that has arrived is taken, however late this worker got to it: a worker
                    # short of CPU must not fail the upstream (and open its circuit) for its own delay.
                    return lead, chunk, chunks
                self._check(FailureKind.FIRST_TOKEN)
                if chunk is None:  # silence: keep the client's connection warm
                    if self._keepalive_due():
                        yield KeepAlive()
                    continue
                lead.append(chunk)
            raise UpstreamFailure(FailureKind.MALFORMED, "upstream stream ended without any content")
        except UpstreamFailure:
            if up is not None:
                up.close()
            raise

    def _relay_rest(self, first: dict, chunks):
        """Relay a started upstream stream until it ends: None when the answer finished, else why not.

        A started stream may last at most KYMA_STREAM_MAX_SECONDS in all, continuations included.
        """
        self._deadline = self._stream_until
        up = self.upstream
        try:
            for chunk in itertools.chain((first,), chunks):
                self._check(FailureKind.LIMIT)
                if chunk is None:
                    if self._keepalive_due():
                        yield KeepAlive()
                    continue
                out = self.answer.relay(chunk)
                if out is not None:
                    self._relayed += 1
                    yield Chunk(out)
        except UpstreamFailure as failure:
            up.close()
            if self.answer.finish_reason:
                # A finished answer that failed afterwards ([DONE] missing, an error event, a stall):
                # the client has it whole, so it ends as it is.
                log.warning("upstream %s failed after finishing the answer: %s", self._current.route.key,
                            failure.message)
                return None
            return failure
        finally:
            self._skipped += up.malformed
        if self.answer.finish_reason is None:
            return UpstreamFailure(FailureKind.NO_FINISH, "upstream ended the stream without finishing the answer")
        return None

    # -- a stream that broke after content reached the client --

    def _broke(self, cand: Candidate, failure: UpstreamFailure) -> None:
        """Record the break on the attempt that served until now (and on its route's circuit)."""
        record = self._serving_record
        record.ok, record.status, record.error = False, failure.status, failure.public
        metered = meter(cand.model, None, self._attempt_prompt_tokens, self.answer.part_text())
        record.completion_tokens, record.cost_micros = metered.usage.completion_tokens, metered.cost.cost_micros
        self._breaks.append((cand, failure))
        self.attempts.broke(cand, failure)

    def _continuable(self, failure: UpstreamFailure) -> bool:
        """Can another candidate finish this answer? Only text can be prefilled, never a half-made tool
        call, not once the stream's total limit has passed, and only in a chat (a prefill is a message)."""
        return (failure.kind is not FailureKind.LIMIT and not self.answer.tool_calls and bool(self.answer.content)
                and self.prep.req.api == "chat")

    def _can_continue(self, cand: Candidate) -> bool:
        """A candidate for continuing: it accepts a prefill, fits the answer so far, and has not broken here."""
        broken = {c.route.key for c, _ in self._breaks}
        return (cand.route.prefill and cand.route.key not in broken
                and self.prep.prompt_tokens + self.answer.tokens() < cand.model.context_window)

    def _continued(self, cand: Candidate) -> None:
        """Another candidate took over: its text follows the client's, under the same id and model."""
        self._current = cand
        self._serving_record = self.attempts.outcomes[-1]
        self._attempt_prompt_tokens = self.prep.prompt_tokens + self.answer.tokens()
        self.answer.hand_over()

    def _give_up(self, cand: Candidate, failure: UpstreamFailure):
        """No candidate can continue: an answer that only lacked its finish ends as it is; else an error event."""
        if failure.kind is FailureKind.NO_FINISH:
            log.warning("upstream %s ended the stream without a finish reason", cand.route.key)
            self._notes.append("the upstream ended without a finish reason")
            yield from self._end()
            return
        yield Failed(self._fail_served(failure))

    def _token_budget(self) -> int:
        """The answer's max_tokens, or the starting model's output limit when the client set none."""
        return self.prep.req.max_tokens or self.served.candidate.model.max_output_tokens

    def _pause(self, seconds: float):
        """Wait between attempts (a backoff, a Retry-After), keeping the client's connection warm."""
        until = self.clock() + seconds
        while (left := until - self.clock()) > 0:
            self.sleep(min(left, max(0.0, self._last_event + self.keepalive - self.clock())))
            if self._keepalive_due():
                yield KeepAlive()

    def _wait(self) -> float:
        """Seconds the upstream may stay silent before we must act (a keep-alive or a deadline)."""
        return min(self._deadline, self._last_event + self.keepalive) - self.clock()

    def _check(self, kind: FailureKind) -> None:
        """Fail the attempt (as `kind`) once the current phase's deadline has passed."""
        if self.clock() >= self._deadline:
            s = self.rt.settings
            raise UpstreamFailure(kind, {
                FailureKind.TIMEOUT: "upstream did not answer before the first-byte timeout",
                FailureKind.FIRST_TOKEN: f"upstream sent no content within {s.first_token_timeout:g} s",
                FailureKind.LIMIT: f"the stream ran past {s.stream_max_seconds:g} s"}[kind])

    def _keepalive_due(self) -> bool:
        return self.clock() - self._last_event >= self.keepalive

    # -- the client side --

    def _next(self):
        """The walk's next event (None once it has ended)."""
        event = next(self._run, None)
        self._last_event = self.clock()
        return event

    def first(self) -> bool:
        """Run until the stream starts (True) or a keep-alive interval passes without content (False).

        A failure of every route before any content raises its error: nothing was sent yet, so
        the client gets a real HTTP error.
        """
        try:
            event = self._next()
        except Exception as exc:  # a bug must not leave the hold to the reaper and the request unlogged
            log.exception("stream failed before it started")
            event = Unserved(InternalError(f"internal error: {type(exc).__name__}"))
        if isinstance(event, Unserved):
            self._fail_unserved(event.error)
            self.close()
            raise event.error
        self.ready = not isinstance(event, KeepAlive)  # else Started
        return self.ready

    def more_ready(self) -> bool:
        """True when more chunks have already arrived (the writer can batch them into one write).

        Never right after the first content chunk: that one goes out at once. An upstream that sends
        its whole answer in one packet would otherwise hold the first chunk back behind the rest of
        the relay and the settlement's commit, which runs before the final chunk.
        """
        if self._burst:
            return True
        return self._relayed > 1 and bool(self.upstream is not None and self.upstream.backlog)

    def headers(self) -> dict:
        """Response headers: X-Kyma-* once a route has started, rate-limit headers always."""
        return response_headers(self.prep, self.served)

    def _start(self, cand: Candidate) -> None:
        overhead = (time.perf_counter() - self.prep.call.started) * 1000 - self.attempts.upstream_ms
        self.served = Served(cand, None, self.attempts.tried, max(0.0, overhead))
        self.record.ttft_ms = (time.perf_counter() - self.prep.call.started) * 1000
        self._current = cand
        self._serving_record = self.attempts.outcomes[-1]
        self.answer = Answer(self.prep.call.request_id, cand.model.id, self.prep.req.client_wants_usage)

    def events(self) -> Iterator[Chunk | KeepAlive | Done | Failed]:
        """Relay the stream; ends with Done (settled) or Failed. Closing it early bills what was made."""
        try:
            # The walk ends by itself after Done, Failed or Unserved.
            while (event := self._next()) is not None:
                if isinstance(event, Started):
                    continue
                if isinstance(event, Unserved):
                    self._fail_unserved(event.error)
                    event = Failed(event.error)
                yield event
                self._keep_hold()
        except Exception:  # a bug must still end the stream with an error event and a settled hold
            log.exception("stream relay failed")
            err = InternalError("internal error while relaying the stream")
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
        now = self.clock()
        if now - self._hold_touched > ttl / 3:
            self._hold_touched = now
            try:
                ledger.extend_hold(self.prep.call.request_id, ttl)
            except Exception:  # a busy database must not end a healthy stream; the next tick retries
                log.warning("could not extend the hold of %s", self.prep.call.request_id, exc_info=True)
                self._hold_touched = now - ttl / 3 + 5

    def _end(self) -> Iterator[Chunk | Done]:
        self._settle(200, None)
        usage = usage_object(self.served.metered)
        report = self._continuation_report()
        self._burst = True  # the final chunk and the end go out in one write
        for chunk in self.answer.final_chunks(usage, {"kyma": report} if report else {}):
            yield Chunk(chunk)
        self._burst = False
        yield Done(usage, self.answer.finish_reason, report)

    def _continuation_report(self) -> dict | None:
        """What the final chunk tells a client whose answer another candidate finished (else None)."""
        if not self._breaks or self._current is self.served.candidate:
            return None
        return {"continued_by": {"model": self._current.model.id, "provider": self._current.route.provider.name},
                "attempts": self.attempts.tried}

    def _fail_served(self, failure: UpstreamFailure) -> KymaError:
        """After the start: bill what was produced, record the error, and say what went wrong."""
        err = (UpstreamTimeout if failure.kind in (FailureKind.IDLE, FailureKind.LIMIT) else UpstreamError)(
            f"The upstream stream failed after it started: {failure.public}")
        self._settle(502, err.message)
        return err

    def _fail_unserved(self, err: KymaError) -> None:
        if not self.finished:
            self.finished = True
            metrics.stream_closed()
            record_failed(self.rt, self.prep, err, self.record, self.attempts)

    def _settle(self, status: int, error: str | None) -> None:
        """Bill what reached the client and record it, once.

        An unbroken stream is billed at its upstream's usage (or the gateway's count). A stream that
        broke is billed as one uninterrupted answer of the same text from the model that started
        it: never more, whoever continued it. What each attempt cost upstream (the broken part, the
        continuation with its prefill) is recorded on the attempt as the operator's cost.
        """
        if self.finished:
            return
        answer, continued = self.answer, self._current is not self.served.candidate
        self.served.metered = meter(self.served.candidate.model, None if continued else answer.usage,
                                    self.prep.prompt_tokens, answer.all_text())
        serving = self._serving_record
        if serving is not None and serving.ok:
            part = meter(self._current.model, answer.usage, self._attempt_prompt_tokens,
                         answer.part_text()) if continued else self.served.metered
            serving.completion_tokens, serving.cost_micros = part.usage.completion_tokens, part.cost.cost_micros
        notes = [n for n in (self.prep.call.note,) if n] + self._notes
        if self._continuation_report():
            broken, why = self._breaks[0]
            notes.insert(0, f"continued by {self._current.model.id} on {self._current.route.provider.name} "
                            f"after {broken.route.provider.name} broke: {why.public}")
        if self._skipped:
            notes.append(f"skipped {self._skipped} malformed stream event(s)")
        self.record.note = "; ".join(notes) or None
        self.record.status, self.record.error = status, error
        record_served(self.rt, self.prep, self.served, self.record, self.attempts)
        self.finished = True  # only now: a failed write leaves the settling to the error path
        metrics.stream_closed()

    def close(self) -> None:
        """Stop the upstream call; if the client left early, bill what was produced and record it."""
        self._run.close()
        if self.upstream is not None:
            self.upstream.close()
        if self.finished:
            return
        if self.served is not None:
            self._settle(CLIENT_CLOSED, "client closed the stream")
        else:
            self._fail_unserved(KymaError("client closed the stream before it started", status=CLIENT_CLOSED))
