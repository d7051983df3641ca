"""Incremental SSE decoding of an upstream byte stream into `data:` payloads."""

from __future__ import annotations

from kyma.providers.base import UpstreamFailure

MAX_EVENT_BYTES = 1 << 20  # an event over 1 MiB is a broken or hostile upstream (UF-7)


class SSEDecoder:
    """Feed it bytes as they arrive; it returns each complete event's data (multi-line data joined)."""

    def __init__(self):
        self._buf = b""

    def feed(self, piece: bytes) -> list[bytes]:
        """The data of every event whose blank line has now arrived (events without data are skipped)."""
        buf = (self._buf + piece).replace(b"\r\n", b"\n")  # a \r\n may straddle two pieces
        out = []
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                break
            event, buf = buf[:end], buf[end + 2:]
            data = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
            if data:
                out.append(b"\n".join(data))
        if len(buf) > MAX_EVENT_BYTES:
            raise UpstreamFailure("malformed", "upstream sent an SSE event over 1 MiB")
        self._buf = buf
        return out
