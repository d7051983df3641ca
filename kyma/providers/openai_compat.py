"""Adapter for OpenAI-compatible upstreams: pooled HTTP, phase timeouts, no retries of its own."""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from kyma.providers.base import RETRYABLE_STATUSES, FailureKind, UpstreamFailure, UpstreamReply, UpstreamStream
from kyma.providers.egress import Egress
from kyma.providers.http import HTTPFailure, Origin, Pending, Phase, Response, parse_base_url
from kyma.providers.sse import SSEDecoder
from kyma.providers.routes import Route
from kyma.translate.completions import chat_chunk_from_legacy, chat_reply_from_legacy
from kyma.translate.embeddings import upstream_vectors

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 << 20
# A bad event in a healthy stream is skipped; this many in a row, or in all, and the stream is broken.
MAX_MALFORMED_IN_A_ROW, MAX_MALFORMED = 3, 10
# In all, not per read: the end of a body after [DONE] (the stream's last event waits for it) and
# an error answer's body. An upstream that trickles bytes past them loses the connection, not time.
DRAIN_SECONDS = 0.25
ERROR_BODY_SECONDS = 1.0

# The upstream path of each API the pipeline speaks (chat is the default everywhere).
PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}

# How a transport failure before any answer reads to the attempt loop (all may fall back).
_PHASE_KIND = {Phase.CONNECT: FailureKind.CONNECT, Phase.TIMEOUT: FailureKind.TIMEOUT,
               Phase.BROKEN: FailureKind.CONNECT, Phase.PROTOCOL: FailureKind.MALFORMED}


class OpenAICompatAdapter:
    """Sends requests to one provider's /chat/completions, /completions or /embeddings.

    Legacy completions come back in chat shapes (text as message or delta content), so the
    pipeline relays every text API alike; embeddings come back with float vectors.
    """

    def __init__(self, *, pool_size: int, connect_timeout: float, first_byte_timeout: float,
                 idle_timeout: float, egress: Egress | None = None):
        self.pool_size = pool_size
        self.egress = egress or Egress()
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.idle_timeout = idle_timeout
        self._origins: dict[str, Origin] = {}

    def _origin(self, base_url: str) -> Origin:
        """The connection pool for a base URL, made once (not per request)."""
        found = self._origins.get(base_url)
        if found is None:
            found = self._origins[base_url] = Origin(
                base_url, size=self.pool_size, connect_timeout=self.connect_timeout,
                ca_certs=self.egress.ca_bundle, proxy=self.egress.proxy_for(parse_base_url(base_url)))
        return found

    def _request(self, route: Route, body: dict, headers: dict, api_key: str | None,
                 stream: bool | None) -> tuple[Origin, bytes, dict]:
        h = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
        h.update(headers)
        if api_key:
            h["Authorization"] = f"Bearer {api_key}"
        body = dict(body, model=route.upstream_model)
        if stream is not None:  # embeddings have no stream field
            body["stream"] = stream
        payload = json.dumps(body).encode()
        return self._origin(route.provider.base_url), payload, h

    def complete(self, route: Route, body: dict, headers: dict, api_key: str | None,
                 api: str = "chat") -> UpstreamReply:
        """One non-streamed attempt; raises UpstreamFailure for anything but a valid answer of `api`."""
        started = time.perf_counter()
        origin, payload, h = self._request(route, body, headers, api_key,
                                           stream=None if api == "embeddings" else False)
        with transport_failures(route):
            resp = origin.post(PATHS[api], payload, h, self.first_byte_timeout)
        if resp.status != 200:
            raise _status_failure(resp)
        raw = _read_body(resp, self.first_byte_timeout)
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise UpstreamFailure(FailureKind.MALFORMED, "upstream sent a body that is not JSON") from exc
        if api != "chat":
            return UpstreamReply(_other_reply(parsed, api), (time.perf_counter() - started) * 1000)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("choices"), list) or not parsed["choices"]:
            raise UpstreamFailure(FailureKind.MALFORMED, "upstream sent a completion without choices")
        choice = parsed["choices"][0]
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise UpstreamFailure(FailureKind.MALFORMED, "upstream sent a completion without a message")
        _string_arguments(choice["message"].get("tool_calls"))
        return UpstreamReply(parsed, (time.perf_counter() - started) * 1000)

    def stream(self, route: Route, body: dict, headers: dict, api_key: str | None,
               api: str = "chat") -> "OpenAIStream":
        """Send a streamed attempt; its answer is awaited and read on the returned call."""
        origin, payload, h = self._request(route, body, headers, api_key, stream=True)
        with transport_failures(route):
            return OpenAIStream(route, origin.start(PATHS[api], payload, h), self.idle_timeout,
                                legacy=api == "completions")


def _other_reply(parsed, api: str) -> dict:
    """A legacy completion in the chat shape; an embeddings answer with its vectors as float lists."""
    try:
        if not isinstance(parsed, dict):
            raise ValueError("not an object")
        if api == "completions":
            return chat_reply_from_legacy(parsed)
        return dict(parsed, data=upstream_vectors(parsed))
    except (ValueError, TypeError) as exc:
        raise UpstreamFailure(FailureKind.MALFORMED, f"upstream sent a bad {api} answer: {exc}") from exc


@contextmanager
def transport_failures(route: Route):
    """HTTPFailure before an answer, as the attempt loop's UpstreamFailure (all of them may fall back)."""
    try:
        yield
    except HTTPFailure as exc:
        log.warning("upstream %s: %s", route.key, exc.__cause__ or exc)  # may name hosts: log, don't send
        raise UpstreamFailure(_PHASE_KIND[exc.phase], exc.detail) from exc


class OpenAIStream(UpstreamStream):
    """One streamed attempt: wait for its headers, then read chunk dicts as they arrive.

    Every wait is bounded by a timeout the caller gives, and a wait that times out returns (or
    yields None) instead of failing, so one greenlet can relay the stream, send keep-alives and
    enforce its own deadlines without a second greenlet or a queue.
    """

    def __init__(self, route: Route, pending: Pending, idle_timeout: float, legacy: bool = False):
        self.route = route
        self.pending = pending
        self.idle_timeout = idle_timeout
        self.legacy = legacy  # legacy completions: chunks carry text, read as delta content
        self.resp: Response | None = None
        self.malformed = 0  # events skipped because they did not parse or had the wrong shape
        self._malformed_in_a_row = 0

    def wait_headers(self, timeout: float) -> bool:
        """True once a 200 event stream answered; False when `timeout` passed first. Raises UpstreamFailure."""
        with transport_failures(self.route):
            resp = self.pending.wait(timeout)
        if resp is None:
            return False
        self.resp = resp
        if resp.status != 200:
            raise _status_failure(resp)
        ctype = resp.header("content-type")
        if "text/event-stream" not in ctype:
            raise UpstreamFailure(FailureKind.MALFORMED, f"upstream answered a stream with Content-Type {ctype or 'none'}")
        return True

    def chunks(self, wake: Callable[[], float]) -> Iterator[dict | None]:
        """Chunk dicts as they arrive, and None whenever `wake()` seconds pass in silence.

        Silence longer than the idle timeout fails the stream ("idle"); so does a broken connection
        ("cut"), an error event ("status") and an end without [DONE] ("cut"). An event that is not a
        JSON chunk of the right shape is logged and skipped; a stream that keeps sending them is
        broken ("malformed").
        """
        resp = self.resp
        last = time.monotonic()
        raw = resp.pieces(lambda: min(wake(), last + self.idle_timeout - time.monotonic()), ticks=True)
        events = SSEDecoder()
        try:
            for piece in raw:
                now = time.monotonic()
                if not piece:
                    if now - last >= self.idle_timeout:
                        raise UpstreamFailure(FailureKind.IDLE, "upstream stream timed out")
                    yield None
                    continue
                last = now
                found = events.feed(piece)
                for i, data in enumerate(found):
                    if data.startswith(b"[DONE]"):
                        self.backlog = 0
                        _drain(resp)
                        return
                    self.backlog = len(found) - i - 1
                    chunk = self._parsed(data)
                    if chunk is not None:
                        yield chunk
            raise UpstreamFailure(FailureKind.CUT, "upstream closed the stream without [DONE]")
        except HTTPFailure as exc:
            raise UpstreamFailure(FailureKind.CUT, "upstream connection broke mid-stream") from exc
        finally:
            self.backlog = 0
            resp.close()

    def _parsed(self, data: bytes) -> dict | None:
        """The event's chunk, or None for a malformed one (skipped, until there are too many)."""
        try:
            chunk = _parse_chunk(data)
        except UpstreamFailure as failure:
            if failure.kind is not FailureKind.MALFORMED:
                raise
            self.malformed += 1
            self._malformed_in_a_row += 1
            log.warning("upstream %s: skipped a malformed stream event (%s)", self.route.key, failure.message)
            if self._malformed_in_a_row >= MAX_MALFORMED_IN_A_ROW or self.malformed >= MAX_MALFORMED:
                raise UpstreamFailure(FailureKind.MALFORMED, f"upstream sent {self.malformed} malformed stream events") from None
            return None
        self._malformed_in_a_row = 0
        return chat_chunk_from_legacy(chunk) if self.legacy else chunk

    def close(self) -> None:
        """Stop the call: an unfinished answer's connection is closed (which stops the upstream)."""
        self.pending.close()
        if self.resp is not None:
            self.resp.close()


def _parse_chunk(data: bytes) -> dict:
    try:
        chunk = json.loads(data.decode())  # SSE is UTF-8: json's own detection of the encoding is not needed
    except ValueError as exc:  # UnicodeDecodeError too
        raise UpstreamFailure(FailureKind.MALFORMED, "upstream sent a stream chunk that is not JSON") from exc
    if not isinstance(chunk, dict) or not _valid_chunk(chunk):
        raise UpstreamFailure(FailureKind.MALFORMED, "upstream sent a stream chunk of the wrong shape")
    if chunk.get("error"):
        err = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
        raise UpstreamFailure(FailureKind.STATUS, f"upstream error mid-stream: {err.get('message', '')}"[:300])
    return chunk


def _string_arguments(calls) -> None:
    """Tool-call arguments as JSON strings, as the OpenAI protocol says (some upstreams send objects)."""
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and fn.get("arguments") is not None and not isinstance(fn["arguments"], str):
            fn["arguments"] = json.dumps(fn["arguments"], separators=(",", ":"))


def _valid_chunk(chunk: dict) -> bool:
    """Choices are objects with an object delta; tool-call arguments are made strings in place."""
    choices = chunk.get("choices", [])
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict) or not isinstance(choice.get("delta", {}), dict):
            return False
        calls = (choice.get("delta") or {}).get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and all(
                isinstance(c, dict) and isinstance(c.get("function", {}), dict) for c in calls)):
            return False
        _string_arguments(calls)
    return True


def _drain(resp: Response) -> None:
    """Read the end of the body after [DONE], so the connection can be reused (else it is closed).

    Without it every stream would open a new connection (and TLS handshake) upstream. The end
    normally comes in the same packet as [DONE]; waiting is bounded by DRAIN_SECONDS in all.
    """
    try:
        for _ in resp.pieces(DRAIN_SECONDS, within=DRAIN_SECONDS):
            pass
    except HTTPFailure:
        pass  # the answer is complete; only the connection's reuse is lost (it was closed)


def _read_body(resp: Response, timeout: float, within: float | None = None) -> bytes:
    """The whole body (at most 32 MiB), with the connection back in the pool afterwards.

    `timeout` is the longest silence, `within` (if given) the longest the whole body may take.
    """
    chunks, size = [], 0
    try:
        for piece in resp.pieces(timeout, within=within):
            size += len(piece)
            if size > MAX_BODY_BYTES:
                raise UpstreamFailure(FailureKind.MALFORMED, "upstream body over 32 MiB")
            chunks.append(piece)
    except HTTPFailure as exc:
        if exc.phase is Phase.TIMEOUT:
            raise UpstreamFailure(FailureKind.TIMEOUT, "upstream stalled while sending the body") from exc
        raise UpstreamFailure(FailureKind.CUT, "upstream connection broke while sending the body") from exc
    finally:
        resp.close()
    return b"".join(chunks)


def _retry_after(resp) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = resp.header(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                return None
    return None


def _status_failure(resp) -> UpstreamFailure:
    """Turn a non-200 upstream answer into a failure, keeping only safe fields of its error body."""
    status = resp.status
    message, code = f"upstream answered HTTP {status}", None
    try:
        err = json.loads(_read_body(resp, ERROR_BODY_SECONDS, within=ERROR_BODY_SECONDS)).get("error") or {}
        if isinstance(err, dict):
            code = err.get("code") if isinstance(err.get("code"), str) else None
            if isinstance(err.get("message"), str):
                message = err["message"][:500]
    except (ValueError, AttributeError, UpstreamFailure):
        pass  # a non-JSON error body: the status says enough
    retryable = status in RETRYABLE_STATUSES or status >= 500
    return UpstreamFailure(FailureKind.STATUS, message, status=status, retry_after=_retry_after(resp),
                           retryable=retryable, code=code)
