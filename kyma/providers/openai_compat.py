"""Adapter for OpenAI-compatible upstreams: pooled HTTP, phase timeouts, no retries of its own.

It speaks through urllib3 directly, the transport under `requests`: the benchmark showed requests'
own layer (settings merging, hooks, cookies) costing more per call than the gateway's other work.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Iterator

import urllib3
from urllib3.exceptions import (ConnectTimeoutError, HTTPError, NewConnectionError, ProtocolError,
                                ReadTimeoutError)

from kyma.providers.base import RETRYABLE_STATUSES, UpstreamFailure, UpstreamReply, UpstreamStream
from kyma.providers.sse import iter_data
from kyma.services.routes import Route

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 << 20
DRAIN_SECONDS = 1.0


def make_pool(pool_size: int) -> urllib3.PoolManager:
    """Connections sized for the worker's concurrency; no retries, no redirects, no proxies."""
    return urllib3.PoolManager(num_pools=16, maxsize=pool_size, block=False, retries=False)


class OpenAICompatAdapter:
    """Sends chat requests to one provider's /chat/completions."""

    def __init__(self, pool: urllib3.PoolManager, *, connect_timeout: float, first_byte_timeout: float,
                 idle_timeout: float):
        self.pool = pool
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=first_byte_timeout)
        self.idle_timeout = idle_timeout
        self._hosts: dict[str, tuple] = {}

    def _host(self, base_url: str):
        """The connection pool and request path for a base URL, resolved once (not per request)."""
        found = self._hosts.get(base_url)
        if found is None:
            path = urllib3.util.parse_url(base_url).path or ""
            found = self._hosts[base_url] = (self.pool.connection_from_url(base_url), f"{path}/chat/completions")
        return found

    def _post(self, route: Route, body: dict, headers: dict, api_key: str | None, stream: bool):
        host, path = self._host(route.provider.base_url)
        h = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
        h.update(headers)
        if api_key:
            h["Authorization"] = f"Bearer {api_key}"
        payload = json.dumps(dict(body, model=route.upstream_model, stream=stream)).encode()
        try:
            try:
                resp = host.urlopen("POST", path, body=payload, headers=h, timeout=self.timeout,
                                    preload_content=False, redirect=False, retries=False, assert_same_host=False)
            except ProtocolError:
                # A pooled keep-alive connection the upstream closed just as it was reused breaks
                # before any answer: try once more on a fresh connection before calling it a failure.
                resp = host.urlopen("POST", path, body=payload, headers=h, timeout=self.timeout,
                                    preload_content=False, redirect=False, retries=False, assert_same_host=False)
        except ConnectTimeoutError as exc:
            if isinstance(exc, NewConnectionError):
                log.warning("upstream %s: %s", route.key, exc)  # names hosts: log it, don't send it
                raise UpstreamFailure("connect", "upstream connection failed (refused)") from exc
            raise UpstreamFailure("connect", "upstream connect timeout") from exc
        except ReadTimeoutError as exc:
            raise UpstreamFailure("timeout", "upstream sent no response before the first-byte timeout") from exc
        except HTTPError as exc:
            log.warning("upstream %s: %s", route.key, exc)
            raise UpstreamFailure("connect", f"upstream connection failed ({type(exc).__name__})") from exc
        if resp.status != 200:
            raise _status_failure(resp)
        return resp

    def complete(self, route: Route, body: dict, headers: dict, api_key: str | None) -> UpstreamReply:
        """One non-streamed attempt; raises UpstreamFailure for anything but a valid completion."""
        started = time.perf_counter()
        resp = self._post(route, body, headers, api_key, stream=False)
        raw = _read_body(resp)
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise UpstreamFailure("malformed", "upstream sent a body that is not JSON") from exc
        if not isinstance(parsed, dict) or not isinstance(parsed.get("choices"), list) or not parsed["choices"]:
            raise UpstreamFailure("malformed", "upstream sent a completion without choices")
        choice = parsed["choices"][0]
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise UpstreamFailure("malformed", "upstream sent a completion without a message")
        _string_arguments(choice["message"].get("tool_calls"))
        return UpstreamReply(parsed, (time.perf_counter() - started) * 1000)

    def stream(self, route: Route, body: dict, headers: dict, api_key: str | None) -> UpstreamStream:
        """Open a streamed attempt; chunks are parsed lazily as the caller iterates."""
        started = time.perf_counter()
        resp = self._post(route, body, headers, api_key, stream=True)
        ctype = resp.headers.get("Content-Type", "")
        if "text/event-stream" not in ctype:
            resp.release_conn()
            raise UpstreamFailure("malformed", f"upstream answered a stream with Content-Type {ctype or 'none'}")
        _set_read_timeout(resp, self.idle_timeout)  # headers arrived: from now on the idle limit applies
        return UpstreamStream(self._chunks(resp), (time.perf_counter() - started) * 1000, _Closer(resp))

    def _chunks(self, resp) -> Iterator[dict]:
        # Chunked bodies yield chunk by chunk; a close-delimited one yields whatever has arrived.
        raw = resp.stream(None) if resp.chunked else iter(lambda: resp.read1(65536), b"")
        done = False
        try:
            for data in iter_data(raw):
                if data.startswith(b"[DONE]"):
                    done = _drain(resp, raw)
                    return
                try:
                    chunk = json.loads(data)
                except ValueError as exc:
                    raise UpstreamFailure("malformed", "upstream sent a stream chunk that is not JSON") from exc
                if not isinstance(chunk, dict) or not _valid_chunk(chunk):
                    raise UpstreamFailure("malformed", "upstream sent a stream chunk of the wrong shape")
                if chunk.get("error"):
                    err = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
                    raise UpstreamFailure("status", f"upstream error mid-stream: {err.get('message', '')}"[:300])
                yield chunk
            raise UpstreamFailure("cut", "upstream closed the stream without [DONE]")
        except ReadTimeoutError as exc:
            raise UpstreamFailure("idle", "upstream stream timed out") from exc
        except HTTPError as exc:
            raise UpstreamFailure("cut", "upstream connection broke mid-stream") from exc
        finally:
            _Closer(resp, reuse=done).close()


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


class _Closer:
    """Ends a response: back to the pool when it was read to the end, else the connection is dropped."""

    def __init__(self, resp, reuse: bool = False):
        self.resp = resp
        self.reuse = reuse

    def close(self) -> None:
        if self.reuse:
            self.resp.release_conn()
        else:
            self.resp.close()  # a half-read body cannot be reused; this also stops the upstream
            self.resp.release_conn()


def _drain(resp, raw) -> bool:
    """Read the end of the body after [DONE], so the connection can be reused; False if it won't end.

    Without it every stream would open a new connection (and TLS handshake) upstream.
    """
    _set_read_timeout(resp, DRAIN_SECONDS)
    try:
        for _ in raw:
            pass
    except HTTPError:
        return False  # the answer is complete; only the connection's reuse is lost
    return True


def _set_read_timeout(resp, seconds: float) -> None:
    sock = getattr(getattr(resp, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _read_body(resp) -> bytes:
    """The whole body (at most 32 MiB), with the connection back in the pool afterwards."""
    chunks, size = [], 0
    try:
        for piece in resp.stream(65536):
            size += len(piece)
            if size > MAX_BODY_BYTES:
                raise UpstreamFailure("malformed", "upstream body over 32 MiB")
            chunks.append(piece)
    except HTTPError as exc:
        resp.close()
        raise UpstreamFailure("cut", "upstream connection broke while sending the body") from exc
    except UpstreamFailure:
        resp.close()
        raise
    finally:
        resp.release_conn()
    return b"".join(chunks)


def _retry_after(resp) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = resp.headers.get(name)
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
        err = json.loads(_read_body(resp)).get("error") or {}
        if isinstance(err, dict):
            code = err.get("code") if isinstance(err.get("code"), str) else None
            if isinstance(err.get("message"), str):
                message = err["message"][:500]
    except (ValueError, AttributeError, UpstreamFailure):
        pass  # a non-JSON error body: the status says enough
    retryable = status in RETRYABLE_STATUSES or status >= 500
    return UpstreamFailure("status", message, status=status, retry_after=_retry_after(resp),
                           retryable=retryable, code=code)
