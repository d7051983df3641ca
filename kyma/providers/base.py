"""What every upstream adapter raises and returns, independent of protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

# Statuses after which another route may serve the request (UF-1). A provider 401/403 means its
# key or configuration is broken, not the client's fault, so it falls back too.
RETRYABLE_STATUSES = frozenset({401, 403, 408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


class UpstreamFailure(Exception):
    """An attempt failed. `retryable` says whether another route may be tried."""

    def __init__(self, kind: str, message: str, *, status: int | None = None,
                 retry_after: float | None = None, retryable: bool = True, code: str | None = None):
        super().__init__(message)
        self.kind = kind  # connect | timeout | status | malformed | cut | idle
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable
        self.code = code

    @property
    def is_context_length(self) -> bool:
        return self.code == "context_length_exceeded"


@dataclass
class UpstreamReply:
    """A complete non-streamed answer: the parsed body and the upstream's latency."""

    body: dict
    latency_ms: float


@dataclass
class UpstreamStream:
    """An open streamed answer: parsed chunk dicts as they arrive; close() drops the connection."""

    chunks: Iterator[dict]
    first_byte_ms: float
    closer: object = field(default=None, repr=False)

    def close(self) -> None:
        """Close the upstream connection (client gone, or the stream is over)."""
        if self.closer is not None:
            self.closer.close()
