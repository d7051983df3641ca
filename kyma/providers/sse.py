"""Incremental SSE decoding of an upstream byte stream into `data:` payloads."""

from __future__ import annotations

from kyma.providers.base import FailureKind, UpstreamFailure

MAX_EVENT_BYTES = 1 << 20  # an event over 1 MiB is a broken or hostile upstream


class SSEDecoder:
    """Feed it bytes as they arrive; it returns each complete event's data (multi-line data joined)."""

    def __init__(self):
        self._buf = b""

    def feed(self, piece: bytes) -> list[bytes]:
        """The data of every event whose blank line has now arrived (events without data are skipped).

        Only the new bytes are normalised and searched (from just before them), so an event that
        trickles in costs time in proportion to its size, not to its size squared.
        """
        old = self._buf
        if not old and piece.startswith(b"data:") and piece.find(b"\n") == len(piece) - 2 and piece.endswith(b"\n\n"):
            return [piece[5:-2].lstrip(b" ")]  # the usual piece: exactly one event of one data line
        if old.endswith(b"\r"):  # a \r\n straddling two pieces
            old, piece = old[:-1], b"\r" + piece
        start = max(0, len(old) - 1)
        buf = old + piece.replace(b"\r\n", b"\n")
        out = []
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            start = 0
            event, buf = buf[:end], buf[end + 2:]
            data = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
            if data:
                out.append(b"\n".join(data))
        if len(buf) > MAX_EVENT_BYTES:
            raise UpstreamFailure(FailureKind.MALFORMED, "upstream sent an SSE event over 1 MiB")
        self._buf = buf
        return out
