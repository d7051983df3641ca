"""The typed objects at the chat pipeline's seams: the call an edge hands in, the prepared request,
the attempt that served it, and the headers a response carries."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kyma.chat.plan import Candidate
from kyma.chat.request import ChatRequest
from kyma.chat.usage import Metered
from kyma.ids import new_id
from kyma.services.accounts import Principal
from kyma.services.catalog import ModelInfo
from kyma.services.ratelimit import Admission
from kyma.services.recording import RequestRecord


def output_cap(model: ModelInfo, asked: int | None) -> int:
    """The tokens a model can be asked to write: max_tokens, within the model's own output limit."""
    limit = model.max_output_tokens
    if limit <= 0:
        return asked or 0
    return min(asked, limit) if asked else limit


@dataclass
class ChatCall:
    """One incoming chat request as an edge (an API protocol, the playground) hands it in."""

    endpoint: str  # chat | messages | playground | completions | embeddings
    sim_fault: str | None = None  # X-Kyma-Sim-Fault, forwarded to simulated providers only
    request_id: str = field(default_factory=new_id)
    started: float = field(default_factory=time.perf_counter)
    body: dict = field(default_factory=dict)  # the OpenAI-shaped body, once the edge has read it
    principal: Principal | None = None  # once authenticated
    asked_for: str | None = None  # the name the client used when its edge mapped it (a claude-* name)
    note: str | None = None  # what the edge wants the request log to say (tools it left out, …)
    record: RequestRecord | None = None  # once its request-log row is written (else an edge's error handler writes it)


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

    def upstream_body(self, stream: bool, cand: Candidate | None = None) -> dict:
        """The body sent upstream: the client's fields, max_tokens within what the candidate's model
        can write (an upstream may refuse more); streams always ask for usage."""
        body = dict(self.req.upstream_body)
        body.pop("stream_options", None)
        if stream:
            body["stream_options"] = {"include_usage": True}
        asked = body.get("max_tokens")
        if cand is not None and isinstance(asked, int) and asked > output_cap(cand.model, asked):
            body["max_tokens"] = output_cap(cand.model, asked)
        return body

    @property
    def api_args(self) -> dict:
        """The adapter's `api` argument for an API other than chat (none for chat)."""
        return {} if self.req.api == "chat" else {"api": self.req.api}

    def upstream_headers(self, cand: Candidate) -> dict:
        """Extra headers for one attempt; fault injection reaches simulated providers only."""
        if self.call.sim_fault and cand.route.provider.simulated:
            return {"X-Sim-Fault": self.call.sim_fault[:200]}
        return {}


@dataclass
class Served:
    """What the client needs to know about the attempt that served."""

    candidate: Candidate
    metered: Metered | None  # None until the stream's usage is known
    attempts: int
    overhead_ms: float


@dataclass
class Reply:
    """A finished non-streamed answer: the OpenAI-shaped body and the response headers."""

    body: dict
    headers: dict


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
