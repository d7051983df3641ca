"""Sequential probes (concurrency 1): per-request latency and time to first content chunk.

A plain http.client connection with keep-alive: the client's own cost is the same for the
gateway and for the simulator, so it cancels out of the difference.
"""

from __future__ import annotations

import http.client
import json
import math
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Target:
    """One side of the comparison: where to POST, with which body and headers."""

    name: str
    url: str  # full URL of /v1/chat/completions
    body: bytes
    headers: dict
    conn: http.client.HTTPConnection | None = None

    def connection(self) -> http.client.HTTPConnection:
        """The kept-alive connection, opened on first use."""
        if self.conn is None:
            parts = urlsplit(self.url)
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        return self.conn

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Samples:
    """Latencies in seconds and the errors seen on one side."""

    values: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def plain_request(t: Target) -> float:
    """POST a non-streamed completion; seconds until the whole body arrived (raises on a bad answer)."""
    conn = t.connection()
    start = time.perf_counter()
    conn.request("POST", urlsplit(t.url).path, body=t.body, headers=t.headers)
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - start
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
    if not json.loads(data).get("choices"):
        raise RuntimeError("completion without choices")
    return elapsed


def first_content(data: bytes) -> bool:
    """True when an SSE buffer holds a chunk with visible content (the first token)."""
    for line in data.split(b"\n"):
        if line.startswith(b"data: {"):
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    return True
    return False


def stream_request(t: Target) -> float:
    """POST a streamed completion; seconds to the first content chunk (raises on a bad stream)."""
    conn = t.connection()
    start = time.perf_counter()
    conn.request("POST", urlsplit(t.url).path, body=t.body, headers=t.headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    buf, ttfc = b"", None
    while True:
        piece = resp.read1(65536)
        if not piece:
            break
        buf += piece
        if ttfc is None and first_content(buf[: buf.rfind(b"\n\n") + 2]):
            ttfc = time.perf_counter() - start
    if ttfc is None:
        raise RuntimeError("stream without content")
    if b"data: [DONE]" not in buf or b'"usage":{' not in buf.replace(b'"usage": {', b'"usage":{'):
        raise RuntimeError("stream without usage or [DONE]")
    return ttfc


WARMUP = 20  # calls per target before the measured rounds


def interleaved(targets: list[Target], n: int, measure, warmup: int = WARMUP,
                rotate: bool = False) -> dict[str, Samples]:
    """n rounds, each calling every target once in turn (so drift hits both sides alike).

    With `rotate`, each round starts one target further along, so no side always runs first
    (the one after another may find the upstream, the caches and the scheduler differently).
    """
    out = {t.name: Samples() for t in targets}
    for i in range(warmup + n):
        k = i % len(targets) if rotate else 0
        for t in targets[k:] + targets[:k]:
            try:
                value = measure(t)
            except (OSError, http.client.HTTPException, RuntimeError, ValueError) as exc:
                out[t.name].errors.append(f"{type(exc).__name__}: {exc}"[:200])
                t.close()
                continue
            if i >= warmup:
                out[t.name].values.append(value)
    for t in targets:
        t.close()
    return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
