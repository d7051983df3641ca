"""Incremental SSE decoding of an upstream byte stream into `data:` payloads."""

from __future__ import annotations

from typing import Iterable, Iterator

from kyma.providers.base import UpstreamFailure

MAX_EVENT_BYTES = 1 << 20  # an event over 1 MiB is a broken or hostile upstream (UF-7)


def iter_data(raw: Iterable[bytes]) -> Iterator[bytes]:
    """Yield each event's data (multi-line data joined with \\n) as soon as its blank line arrives."""
    buf = b""
    for piece in raw:
        if not piece:
            continue
        buf += piece.replace(b"\r\n", b"\n")
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                if len(buf) > MAX_EVENT_BYTES:
                    raise UpstreamFailure("malformed", "upstream sent an SSE event over 1 MiB")
                break
            event, buf = buf[:end], buf[end + 2:]
            data = [line[5:].lstrip(b" ") if line.startswith(b"data:") else None for line in event.split(b"\n")]
            payload = [d for d in data if d is not None]
            if payload:
                yield b"\n".join(payload)
