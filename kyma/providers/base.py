"""What every upstream adapter raises and returns, independent of protocol."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, Iterator

from kyma.errors import ContextLengthExceeded

# Statuses after which another route may serve the request. A provider 401/402/403 means its
# key, account or configuration is broken and a 404 that its model id is gone: not the client's
# fault, so they fall back too (and count against the route's circuit breaker).
RETRYABLE_STATUSES = frozenset({401, 402, 403, 404, 408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})

# Statuses a moment may cure: the same route is worth a retry after a short wait.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})

# Upstream statuses whose message describes the client's own request, so it may be shown to them.
CLIENT_ERROR_STATUSES = frozenset({400, 413, 422})

# Anything shaped like a credential: provider keys (sk-…), bearer tokens, long opaque strings.
_SECRET = re.compile(r"\b(?:sk|pk|rk|ky|ks|key|tok)[-_][A-Za-z0-9_\-]{6,}|\b[A-Za-z0-9_\-]{32,}\b")


def scrub(text: str) -> str:
    """Text from an upstream with anything credential-shaped replaced, safe to show and to log."""
    return _SECRET.sub("[redacted]", text)


class FailureKind(StrEnum):
    """How an upstream attempt failed; the values are the strings logs and records have always shown."""

    CONNECT = "connect"  # no connection, or it broke before any answer
    TIMEOUT = "timeout"  # no answer (or no whole body) in time
    FIRST_TOKEN = "first_token"  # a stream sent no content in time
    STATUS = "status"  # an error status, or an error event mid-stream
    MALFORMED = "malformed"  # an answer that does not parse or has the wrong shape
    CUT = "cut"  # the connection broke, or the stream ended without [DONE]
    IDLE = "idle"  # a stream stayed silent past the idle timeout
    LIMIT = "limit"  # a stream ran past its total time limit
    NO_FINISH = "no_finish"  # a stream ended without finishing its answer


# Kinds a moment may cure (a status failure decides by its status instead).
TRANSIENT_KINDS = frozenset({FailureKind.CONNECT, FailureKind.TIMEOUT, FailureKind.CUT, FailureKind.IDLE,
                             FailureKind.MALFORMED})
# Kinds that mean "too slow", not "broken": a request that failed only so (or by not connecting) timed out.
SLOW_KINDS = frozenset({FailureKind.TIMEOUT, FailureKind.IDLE, FailureKind.FIRST_TOKEN})


class UpstreamFailure(Exception):
    """An attempt failed. `retryable` says whether another route may be tried."""

    def __init__(self, kind: FailureKind | str, message: str, *, status: int | None = None,
                 retry_after: float | None = None, retryable: bool = True, code: str | None = None):
        super().__init__(message)
        self.kind = FailureKind(kind)  # an unknown kind is a ValueError here, not a silent mismatch later
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable
        self.code = code

    @property
    def transient(self) -> bool:
        """Would the same route likely succeed a moment later? (A slow first token would not.)"""
        if self.kind is FailureKind.STATUS:
            return self.status is None or self.status in TRANSIENT_STATUSES
        return self.kind in TRANSIENT_KINDS

    @property
    def is_context_length(self) -> bool:
        return self.code == ContextLengthExceeded.code  # OpenAI-compatible upstreams use the same code

    @property
    def public(self) -> str:
        """What the client and the request log may see: the upstream's own words only when they
        are about the client's request; otherwise just the status (the detail stays in server logs)."""
        if self.kind is FailureKind.STATUS and self.status is not None:
            if self.status in CLIENT_ERROR_STATUSES or self.is_context_length:
                return scrub(self.message)
            return f"upstream answered HTTP {self.status}"
        if self.kind is FailureKind.STATUS:
            return "upstream reported an error mid-stream"
        return self.message


@dataclass
class UpstreamReply:
    """A complete non-streamed answer: the parsed body and the upstream's latency."""

    body: dict
    latency_ms: float


class UpstreamStream:
    """A streamed attempt in flight, as every adapter returns it (the protocol's calls, not a transport)."""

    backlog: int = 0  # chunks already received and not yet yielded (the relay batches its writes)
    malformed: int = 0  # events skipped because they did not parse

    def wait_headers(self, timeout: float) -> bool:
        """True once the upstream accepted the stream; False if `timeout` passed first."""
        raise NotImplementedError

    def chunks(self, wake: Callable[[], float]) -> Iterator[dict | None]:
        """OpenAI chunk dicts as they arrive; None each time `wake()` seconds pass without one."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the call; an unfinished answer's connection is closed, which stops the upstream."""
        raise NotImplementedError
