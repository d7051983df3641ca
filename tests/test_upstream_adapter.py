"""The OpenAI-compatible adapter against canned upstream answers, and what clients may see of them."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kyma.providers.base import FailureKind, UpstreamFailure, scrub
from kyma.providers.openai_compat import OpenAICompatAdapter
from kyma.providers.routes import Provider, Route


class _Canned(BaseHTTPRequestHandler):
    replies: list = []  # (status, content type, body bytes)

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, ctype, body = self.replies.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    adapter = OpenAICompatAdapter(pool_size=4, connect_timeout=2, first_byte_timeout=5, idle_timeout=5)
    route = Route("m", Provider("canned", f"http://127.0.0.1:{server.server_address[1]}/v1"), "m")

    def call(status, body, ctype="application/json"):
        _Canned.replies = [(status, ctype, body if isinstance(body, bytes) else json.dumps(body).encode())]
        return adapter.complete(route, {"messages": [{"role": "user", "content": "hi"}]}, {}, None)

    yield call
    server.shutdown()
    server.server_close()


def _completion(message):
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": message,
                                                                  "finish_reason": "stop"}]}


def test_object_tool_arguments_become_json_strings(upstream):
    reply = upstream(200, _completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}))
    assert reply.body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"a":1}'


@pytest.mark.parametrize("body", [
    {"choices": ["x"]},
    {"choices": [{"index": 0, "message": "text"}]},
    {"choices": []},
    b"<html>oops</html>",
])
def test_wrong_shapes_are_malformed_failures_not_crashes(upstream, body):
    with pytest.raises(UpstreamFailure) as exc:
        upstream(200, body)
    assert exc.value.kind == "malformed" and exc.value.retryable


@pytest.mark.parametrize("status", [401, 402, 403, 404, 500, 503])
def test_provider_faults_fall_back_and_hide_the_upstream_text(upstream, status):
    with pytest.raises(UpstreamFailure) as exc:
        upstream(status, {"error": {"message": "Incorrect API key provided: sk-live-0123456789abcdef"}})
    assert exc.value.retryable
    assert exc.value.public == f"upstream answered HTTP {status}"


def test_client_errors_keep_their_message_but_never_a_key(upstream):
    with pytest.raises(UpstreamFailure) as exc:
        upstream(400, {"error": {"message": "max_tokens too large for key sk-abcdef123456", "code": "bad"}})
    assert not exc.value.retryable
    assert exc.value.public == "max_tokens too large for key [redacted]"


def test_scrub_leaves_ordinary_text_alone():
    assert scrub("The model deepseek-v3 is overloaded") == "The model deepseek-v3 is overloaded"
    assert "[redacted]" in scrub("token ky-" + "a" * 40)


def test_sse_events_decode_the_same_however_the_bytes_are_split():
    import random

    from kyma.providers.sse import SSEDecoder

    stream = b'data: {"a":1}\r\n\r\n: comment\n\ndata: x\ndata: y\n\ndata: [DONE]\r\n\r\n'
    rng = random.Random(7)
    for _ in range(500):
        decoder, out, i = SSEDecoder(), [], 0
        while i < len(stream):
            n = rng.randint(1, 5)
            out += decoder.feed(stream[i:i + n])
            i += n
        assert out == [b'{"a":1}', b"x\ny", b"[DONE]"]


def test_whole_events_in_one_piece_decode_as_the_same_bytes_split_anywhere():
    """A piece that is exactly one event (the usual case) takes a short path: it must agree with the
    general one, which sees the same bytes split at every point."""
    from kyma.providers.sse import SSEDecoder

    for event in (b'data: {"a":1}\n\n', b"data:{}\n\n", b"data:  two spaces\n\n", b"data:\n\n",
                  b"data: a\rb\n\n", b"data: x\ndata: y\n\n", b"data: x\r\n\r\n", b": comment\n\n",
                  b"event: e\ndata: z\n\n", b"data: x\n\ndata: y\n\n"):
        whole = SSEDecoder().feed(event)
        for cut in range(1, len(event)):
            decoder = SSEDecoder()
            assert decoder.feed(event[:cut]) + decoder.feed(event[cut:]) == whole, (event, cut)
        decoder = SSEDecoder()
        assert decoder.feed(b"data: lead") == [] and decoder.feed(b"\n\n" + event) == [b"lead"] + whole


def test_failure_kinds_read_as_the_strings_logs_and_records_always_showed():
    failure = UpstreamFailure("cut", "upstream connection broke mid-stream")
    assert failure.kind is FailureKind.CUT
    assert f"{failure.kind}" == str(failure.kind) == "cut" and failure.kind == "cut"
    assert json.dumps({"kind": failure.kind}) == '{"kind": "cut"}'
    with pytest.raises(ValueError):  # a misspelt kind fails where it is raised, not in a comparison later
        UpstreamFailure("cutt", "typo")
