"""Adapter for OpenAI-compatible upstreams: pooled HTTP, phase timeouts, no retries of its own."""

from __future__ import annotations

import json
import logging
import time
from typing import Iterator

import requests
from requests.adapters import HTTPAdapter

from kyma.providers.base import RETRYABLE_STATUSES, UpstreamFailure, UpstreamReply, UpstreamStream
from kyma.providers.sse import iter_data
from kyma.services.routes import Route

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 << 20


def make_session(pool_size: int) -> requests.Session:
    """A session with a connection pool sized for the worker's concurrency and no retries."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False  # never let proxy variables reroute upstream traffic
    return session


class OpenAICompatAdapter:
    """Sends chat requests to one provider's /chat/completions."""

    def __init__(self, session: requests.Session, *, connect_timeout: float, first_byte_timeout: float,
                 idle_timeout: float):
        self.session = session
        self.timeout = (connect_timeout, first_byte_timeout)
        self.idle_timeout = idle_timeout

    def _post(self, route: Route, body: dict, headers: dict, api_key: str | None, stream: bool):
        url = f"{route.provider.base_url}/chat/completions"
        h = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
        h.update(headers)
        if api_key:
            h["Authorization"] = f"Bearer {api_key}"
        payload = dict(body, model=route.upstream_model, stream=stream)
        try:
            resp = self.session.post(url, data=json.dumps(payload), headers=h, timeout=self.timeout, stream=True)
        except requests.exceptions.ConnectTimeout as exc:
            raise UpstreamFailure("connect", "upstream connect timeout") from exc
        except requests.exceptions.ReadTimeout as exc:
            raise UpstreamFailure("timeout", "upstream sent no response before the first-byte timeout") from exc
        except requests.exceptions.RequestException as exc:
            log.warning("upstream %s: %s", route.key, exc)  # the detail names hosts: log it, don't send it
            raise UpstreamFailure("connect", f"upstream connection failed ({type(exc).__name__})") from exc
        if resp.status_code != 200:
            raise _status_failure(resp)
        return resp

    def complete(self, route: Route, body: dict, headers: dict, api_key: str | None) -> UpstreamReply:
        """One non-streamed attempt; raises UpstreamFailure for anything but a valid completion."""
        started = time.perf_counter()
        resp = self._post(route, body, headers, api_key, stream=False)
        try:
            raw = _read_capped(resp)
        except requests.exceptions.RequestException as exc:
            raise UpstreamFailure("cut", "upstream connection broke while sending the body") from exc
        finally:
            resp.close()
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise UpstreamFailure("malformed", "upstream sent a body that is not JSON") from exc
        if not isinstance(parsed, dict) or not isinstance(parsed.get("choices"), list) or not parsed["choices"]:
            raise UpstreamFailure("malformed", "upstream sent a completion without choices")
        return UpstreamReply(parsed, (time.perf_counter() - started) * 1000)

    def stream(self, route: Route, body: dict, headers: dict, api_key: str | None) -> UpstreamStream:
        """Open a streamed attempt; chunks are parsed lazily as the caller iterates."""
        started = time.perf_counter()
        resp = self._post(route, body, headers, api_key, stream=True)
        ctype = resp.headers.get("Content-Type", "")
        if "text/event-stream" not in ctype:
            resp.close()
            raise UpstreamFailure("malformed", f"upstream answered a stream with Content-Type {ctype or 'none'}")
        _set_read_timeout(resp, self.idle_timeout)  # headers arrived: from now on the idle limit applies
        return UpstreamStream(self._chunks(resp), (time.perf_counter() - started) * 1000, resp)

    def _chunks(self, resp) -> Iterator[dict]:
        raw = resp.iter_content(chunk_size=None)
        try:
            for data in iter_data(raw):
                if data.startswith(b"[DONE]"):
                    _drain(resp, raw)
                    return
                try:
                    chunk = json.loads(data)
                except ValueError as exc:
                    raise UpstreamFailure("malformed", "upstream sent a stream chunk that is not JSON") from exc
                if not isinstance(chunk, dict):
                    raise UpstreamFailure("malformed", "upstream sent a stream chunk that is not an object")
                if chunk.get("error"):
                    err = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
                    raise UpstreamFailure("status", f"upstream error mid-stream: {err.get('message', '')}"[:300])
                yield chunk
            raise UpstreamFailure("cut", "upstream closed the stream without [DONE]")
        except requests.exceptions.ConnectionError as exc:
            # urllib3 reports a read timeout on the socket as a ConnectionError here.
            kind = "idle" if "timed out" in str(exc).lower() else "cut"
            raise UpstreamFailure(kind, "upstream stream timed out" if kind == "idle"
                                  else "upstream connection broke mid-stream") from exc
        except requests.exceptions.RequestException as exc:
            raise UpstreamFailure("cut", "upstream connection broke mid-stream") from exc
        finally:
            resp.close()


DRAIN_SECONDS = 1.0


def _drain(resp, raw) -> None:
    """Read the end of the body after [DONE], so the connection goes back to the pool for reuse.

    Without it every stream would open a new connection (and TLS handshake) upstream. An upstream
    that keeps the body open after [DONE] gets a short read timeout and its connection is dropped.
    """
    _set_read_timeout(resp, DRAIN_SECONDS)
    try:
        for _ in raw:
            pass
    except requests.exceptions.RequestException:
        pass  # the answer is complete; only the connection's reuse is lost


def _set_read_timeout(resp, seconds: float) -> None:
    sock = getattr(getattr(resp.raw, "_connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _read_capped(resp) -> bytes:
    chunks, size = [], 0
    for piece in resp.iter_content(chunk_size=65536):
        size += len(piece)
        if size > MAX_BODY_BYTES:
            raise UpstreamFailure("malformed", "upstream body over 32 MiB")
        chunks.append(piece)
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
    status = resp.status_code
    message, code = f"upstream answered HTTP {status}", None
    try:
        err = json.loads(_read_capped(resp)).get("error") or {}
        if isinstance(err, dict):
            code = err.get("code") if isinstance(err.get("code"), str) else None
            if isinstance(err.get("message"), str):
                message = err["message"][:500]
    except (ValueError, AttributeError, UpstreamFailure, requests.exceptions.RequestException):
        pass  # a non-JSON error body: the status says enough
    finally:
        resp.close()
    retryable = status in RETRYABLE_STATUSES or status >= 500
    return UpstreamFailure("status", message, status=status, retry_after=_retry_after(resp),
                           retryable=retryable, code=code)
