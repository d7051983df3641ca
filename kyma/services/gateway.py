"""The chat pipeline: validate → admit → hold → plan → attempt routes → settle → record (DESIGN.md)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import gevent

from kyma import tokens
from kyma.db import connected, release_connection, write_transaction
from kyma.errors import InsufficientCredits, InvalidRequest, KymaError
from kyma.providers.base import UpstreamFailure
from kyma.services import ledger
from kyma.services.accounts import Principal
from kyma.services.attempts import Attempts
from kyma.services.catalog import ModelInfo
from kyma.services.chat_request import ChatRequest, parse_chat_request
from kyma.services.pricing import micros_to_usd, worst_case_micros
from kyma.services.ratelimit import Admission
from kyma.services.recording import RequestRecord, finish
from kyma.services.router import Candidate, missing_capability
from kyma.services.usage import Metered, completion_text, meter, usage_object


def new_request_id() -> str:
    """A request id that is unique across workers and instances."""
    return uuid.uuid4().hex


@dataclass
class ChatCall:
    """One incoming chat request, as the API layer hands it to the pipeline."""

    body: dict
    endpoint: str = "chat"  # chat | messages | playground
    request_id: str = field(default_factory=new_request_id)
    sim_fault: str | None = None  # X-Kyma-Sim-Fault, forwarded to simulated providers only
    started: float = field(default_factory=time.perf_counter)


@dataclass
class Prepared:
    """A request that passed validation, limits and the credit hold, with its planned routes."""

    call: ChatCall
    principal: Principal
    req: ChatRequest
    model: ModelInfo
    alias: str | None
    candidates: list[Candidate]
    prompt_tokens: int
    hold_micros: int
    admission: Admission  # rate-limit headers and the token reservation to correct afterwards


@dataclass
class Served:
    """What the client needs to know about the attempt that served."""

    candidate: Candidate
    metered: Metered | None  # None until the stream's usage is known
    attempts: int
    overhead_ms: float


def prepare(rt, call: ChatCall, principal: Principal) -> Prepared:
    """Everything before the first upstream call; raises the KymaError the client should get."""
    req = parse_chat_request(call.body)
    model, alias = rt.catalog.resolve(req.model)
    lacking = missing_capability(model, req.needs)
    if lacking:
        raise InvalidRequest(f"The model '{model.id}' does not support {lacking}; GET /v1/models lists the "
                             f"models that do.", param="tools" if lacking == "tool calling" else "messages",
                             code="unsupported_feature")
    prompt_tokens = tokens.count_messages(req.messages, call.body.get("tools"))
    candidates = rt.planner.plan(model, req, prompt_tokens)
    if not candidates:
        if prompt_tokens >= model.context_window:
            raise InvalidRequest(f"The prompt (about {prompt_tokens} tokens) does not fit the context window of "
                                 f"'{model.id}' ({model.context_window}) or of any fallback model.",
                                 param="messages", code="context_length_exceeded")
        raise InvalidRequest("No provider route matches the request's provider preferences.", param="provider",
                             code="no_route")
    tier = rt.tiers.get(principal.tier)
    models = {c.model.id: c.model for c in candidates}.values()
    hold = max(worst_case_micros(m, prompt_tokens, req.max_tokens or m.max_output_tokens) for m in models)
    admission = _admit_and_hold(rt, principal, call.request_id, model, list(models), prompt_tokens,
                                req.max_tokens, hold, tier)
    return Prepared(call, principal, req, model, alias, candidates, prompt_tokens, hold, admission)


class _Refused(Exception):
    """Rolls back an admission whose hold the balance could not cover."""


def _admit_and_hold(rt, principal: Principal, request_id: str, model: ModelInfo, models: list[ModelInfo],
                    prompt_tokens: int, max_tokens: int | None, hold: int, tier) -> Admission:
    """Rate limits, then the credit hold: one transaction when the counters share the database."""
    account = principal.account_id
    ttl = rt.settings.hold_ttl_seconds
    if rt.limiter.in_database:
        try:
            with connected(), write_transaction():
                admission = rt.limiter.admit(account, tier, model.id, prompt_tokens, max_tokens or 0)
                if not ledger.place_hold(account, request_id, hold, ttl_seconds=ttl):
                    raise _Refused  # undoes the admission too: a refused request uses no quota
            return admission
        except _Refused:
            raise _insufficient(account, model, models, prompt_tokens, max_tokens, hold,
                                admission.headers) from None
    admission = rt.limiter.admit(account, tier, model.id, prompt_tokens, max_tokens or 0)  # Redis: no txn
    try:
        held = ledger.place_hold(account, request_id, hold, ttl_seconds=ttl)
    except BaseException:
        rt.limiter.cancel(admission)  # the database failed: the request never ran
        raise
    if not held:
        rt.limiter.cancel(admission)
        raise _insufficient(account, model, models, prompt_tokens, max_tokens, hold, admission.headers)
    return admission


def _affordable_max_tokens(models: list[ModelInfo], prompt_tokens: int, available: int) -> int:
    """The largest max_tokens whose hold (the worst case over every candidate model) fits `available`."""
    best = None
    for m in models:
        out = m.pricing.output_per_1m
        n = int((available - prompt_tokens * m.pricing.input_per_1m) // out) if out > 0 else 0
        # The float estimate can be off by one either way: settle it with the exact integer check.
        while n > 0 and worst_case_micros(m, prompt_tokens, n) > available:
            n -= 1
        while out > 0 and worst_case_micros(m, prompt_tokens, n + 1) <= available:
            n += 1
        best = n if best is None else min(best, n)
    return max(0, best or 0)


def _insufficient(account_id: int, model: ModelInfo, models: list[ModelInfo], prompt_tokens: int,
                  max_tokens: int | None, hold: int, headers: dict) -> InsufficientCredits:
    """A 402 that says what the balance could afford (a max_tokens that would be accepted)."""
    available = max(0, ledger.balance(account_id).balance_micros)
    affordable = _affordable_max_tokens(models, prompt_tokens, available)
    asked = max_tokens or model.max_output_tokens
    hint = (f"Lower max_tokens to {affordable} or less, or add credits." if affordable >= 1
            else "Add credits to continue.")
    return InsufficientCredits(
        f"Insufficient credits: this request may cost up to ${micros_to_usd(hold):.6f} ({prompt_tokens} prompt "
        f"tokens + max_tokens {asked} at {model.id} prices, or a fallback model's) and the balance is "
        f"${micros_to_usd(available):.6f}. " + hint, headers=headers)


def upstream_body(prep: Prepared, stream: bool) -> dict:
    """The body sent upstream: the client's fields; streams always ask for usage."""
    body = dict(prep.req.upstream_body)
    body.pop("stream_options", None)
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def upstream_headers(prep: Prepared, cand: Candidate) -> dict:
    """Extra headers for one attempt; fault injection reaches simulated providers only."""
    if prep.call.sim_fault and cand.route.provider.simulated:
        return {"X-Sim-Fault": prep.call.sim_fault[:200]}
    return {}


def new_attempts(rt, prep: Prepared) -> Attempts:
    """The attempt loop for a prepared request, bounded by settings."""
    s = rt.settings
    deadline = time.monotonic() + s.request_deadline - (time.perf_counter() - prep.call.started)
    # Upstream calls follow: don't hold a (PostgreSQL) connection across them; settling reconnects.
    release_connection()
    return Attempts(rt.breaker, prep.candidates, max_attempts=s.max_attempts, deadline=deadline)


def response_headers(prep: Prepared, served: Served | None) -> dict:
    """X-Kyma-* headers, the request id and the rate-limit headers for a chat response."""
    h = {"X-Request-Id": prep.call.request_id, **prep.admission.headers}
    if prep.alias:
        h["X-Kyma-Alias"] = prep.alias
    if served is None:
        return h
    cand = served.candidate
    h["X-Kyma-Model"] = cand.model.id
    h["X-Kyma-Fallback"] = "true" if cand.layer else "false"
    if cand.layer:
        h["X-Kyma-Fallback-Layer"] = str(cand.layer)
    h["X-Kyma-Provider"] = cand.route.provider.name
    if cand.route.provider.simulated:
        h["X-Kyma-Simulated"] = "true"
    h["X-Kyma-Attempts"] = str(served.attempts)
    h["X-Kyma-Overhead-Ms"] = f"{served.overhead_ms:.2f}"
    return h


def base_record(prep: Prepared, status: int, *, stream: bool) -> RequestRecord:
    """The request-log record with the fields known before any attempt."""
    return RequestRecord(
        request_id=prep.call.request_id, endpoint=prep.call.endpoint, status=status,
        account=prep.principal.account_id, api_key=prep.principal.api_key_id,
        model_requested=prep.req.model, alias=prep.alias, stream=stream)


def record_served(rt, prep: Prepared, served: Served, record: RequestRecord, attempts: Attempts) -> None:
    """Settle at the metered cost and log the request, then correct the token-rate counter."""
    cand, m = served.candidate, served.metered
    record.model_served, record.provider = cand.model.id, cand.route.provider.name
    record.simulated, record.fallback_layer = cand.route.provider.simulated, cand.layer
    record.attempts, record.outcomes = attempts.tried, attempts.outcomes
    record.prompt_tokens, record.completion_tokens = m.usage.prompt_tokens, m.usage.completion_tokens
    record.cached_tokens, record.cost_micros = m.usage.cached_tokens, m.cost.cost_micros
    record.latency_ms = (time.perf_counter() - prep.call.started) * 1000
    _finish(rt, prep, record, m.usage.total_tokens)


def record_failed(rt, prep: Prepared, err: KymaError, record: RequestRecord, attempts: Attempts | None) -> None:
    """Release the hold and log a request that no attempt served."""
    record.status, record.error = err.status, err.message
    if attempts is not None:
        record.attempts, record.outcomes = attempts.tried, attempts.outcomes
    record.latency_ms = (time.perf_counter() - prep.call.started) * 1000
    _finish(rt, prep, record, 0)


def _finish(rt, prep: Prepared, record: RequestRecord, used_tokens: int) -> None:
    """Settle, log and correct the token counter: one transaction when the counters share the database."""
    if rt.limiter.in_database:
        with connected(), write_transaction():
            finish(record, held=True)
            _correct_tokens(rt, prep, used_tokens)
    else:
        finish(record, held=True)
        _correct_tokens(rt, prep, used_tokens)


def _correct_tokens(rt, prep: Prepared, used: int) -> None:
    """Replace the token-per-minute reservation with what the request really used."""
    a = prep.admission
    rt.limiter.record_tokens(prep.principal.account_id, used, a.tokens_reserved, reserved_at=a.reserved_at)


def record_rejected(call: ChatCall, err: KymaError, principal: Principal | None, model: str = "") -> None:
    """Log a request refused before its hold (auth, validation, limits, credits)."""
    finish(RequestRecord(request_id=call.request_id, endpoint=call.endpoint, status=err.status,
                         account=principal.account_id if principal else None,
                         api_key=principal.api_key_id if principal else None,
                         model_requested=model if isinstance(model, str) else "",
                         stream=bool(call.body.get("stream")) if isinstance(call.body, dict) else False,
                         error=err.message,
                         latency_ms=(time.perf_counter() - call.started) * 1000), held=False)


@dataclass
class Completion:
    """A finished non-streamed answer: body and headers."""

    body: dict
    headers: dict


def complete(rt, prep: Prepared) -> Completion:
    """Serve a non-streamed request through the first route that answers."""
    record = base_record(prep, 200, stream=False)
    attempts = new_attempts(rt, prep)
    served = None
    try:
        for cand, verdict in attempts:
            adapter = rt.upstreams.adapter(cand.route)
            t0 = time.perf_counter()
            try:
                # The socket timeouts restart with every byte: a trickling upstream still meets the deadline.
                with gevent.Timeout(max(0.1, attempts.deadline - time.monotonic()), UpstreamFailure(
                        "timeout", "upstream did not finish before the request deadline")):
                    reply = adapter.complete(cand.route, upstream_body(prep, False), upstream_headers(prep, cand),
                                             rt.upstreams.api_key(cand.route))
            except UpstreamFailure as failure:
                attempts.failed(cand, failure, (time.perf_counter() - t0) * 1000)
                continue
            attempts.succeeded(cand, verdict, reply.latency_ms)
            served = (cand, reply.body)
            break
    except BaseException as exc:
        # A bug or a killed greenlet must not leave the hold hanging or the request unlogged.
        record_failed(rt, prep, KymaError(f"internal error: {type(exc).__name__}"), record, attempts)
        raise
    if served is None:
        err = attempts.final_error()
        record_failed(rt, prep, err, record, attempts)
        raise err
    return _completed(rt, prep, served[0], served[1], attempts, record)


def _completed(rt, prep: Prepared, cand: Candidate, body: dict, attempts: Attempts,
               record: RequestRecord) -> Completion:
    try:
        metered = meter(cand.model, body.get("usage"), prep.prompt_tokens,
                        completion_text(body["choices"][0]["message"]))
        usage = usage_object(metered)
    except Exception as exc:  # the adapter checked the shape; this is a last line of defence
        err = KymaError(f"internal error metering the answer: {type(exc).__name__}")
        record_failed(rt, prep, err, record, attempts)
        raise err from exc
    overhead = (time.perf_counter() - prep.call.started) * 1000 - attempts.upstream_ms
    served = Served(cand, metered, attempts.tried, overhead)
    record_served(rt, prep, served, record, attempts)
    out = dict(body, id=f"chatcmpl-{prep.call.request_id}", model=cand.model.id, usage=usage)
    out.setdefault("object", "chat.completion")
    out.setdefault("created", int(time.time()))
    return Completion(out, response_headers(prep, served))
