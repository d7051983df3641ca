"""No input gets a 500: generated bodies with the wrong types, objects and deep nesting in every field
are answered with a 4xx in the endpoint's protocol (or served, when they happen to be valid)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kyma.providers.base import UpstreamReply, UpstreamStream
from tests.conftest import register

REPLY = {"id": "up", "object": "chat.completion", "created": 1,
         "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


class Canned(UpstreamStream):
    """An upstream stream that answers "ok" at once."""

    def wait_headers(self, timeout):
        return True

    def chunks(self, wake):
        yield {"id": "up", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}}]}
        yield {"id": "up", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}

    def close(self):
        pass


class Upstream:
    """Every route answers "ok": only the gateway's own handling of the input is under test."""

    def complete(self, route, body, headers, api_key):
        return UpstreamReply(json.loads(json.dumps(REPLY)), 1.0)

    def stream(self, route, body, headers, api_key):
        return Canned()


@pytest.fixture()
def api(app):
    """A test client whose key has credit, in front of an upstream that always answers."""
    app.extensions["kyma"].upstreams.adapter = lambda route: Upstream()
    client = app.test_client()
    key = register(client, "fuzz@example.com", "fuzz-pass-1")["api_key"]
    return client, {"Authorization": f"Bearer {key}"}


CHAT = {"model": "qwen-3-32b", "max_tokens": 16, "temperature": 0.5, "stream": False,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "hi"},
                                                  {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
                     {"role": "assistant", "content": None, "tool_calls": [
                         {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "done"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto", "response_format": {"type": "text"}, "stop": ["x"],
        "stream_options": {"include_usage": True}, "provider": {"order": ["sim-alpha"]}, "models": ["glm-4.5-air"]}
MESSAGES = {"model": "qwen-3-32b", "max_tokens": 16, "system": [{"type": "text", "text": "be brief"}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "hi"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"}]}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "auto"},
            "stop_sequences": ["x"], "temperature": 0.5, "thinking": {"type": "enabled", "budget_tokens": 1024},
            "metadata": {"user_id": "u"}, "stream": False}

# Text includes lone surrogates ("\ud800" once escaped), which hypothesis leaves out by default.
texts = st.text(st.characters(categories=["L", "N", "P", "Cs"]), max_size=8)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), texts)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)


def paths(value, prefix=()):
    """Every place in a JSON value, as a path of keys and indexes."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


def replaced(body, path, new):
    """A deep copy of `body` with the value at `path` replaced (the whole body for the empty path)."""
    if not path:
        return new
    out = json.loads(json.dumps(body))
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = new
    return out


def nested(depth: int):
    """[[[…]]] `depth` deep, built without recursion."""
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


CASES = [("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES), ("/v1/messages/count_tokens", MESSAGES),
         ("/v1/auth/register", {"email": "new@example.com", "password": "fuzz-pass-2"}),
         ("/v1/auth/login", {"email": "fuzz@example.com", "password": "fuzz-pass-1"}),
         ("/v1/auth/keys", {"name": "ci"})]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("url, body", CASES)
@FUZZ
@given(data=st.data())
def test_any_value_in_any_field_is_answered_without_a_server_error(api, url, body, data):
    client, auth = api
    path = data.draw(st.sampled_from(list(paths(body))))
    bad = replaced(body, path, data.draw(values))
    r = client.post(url, data=json.dumps(bad), headers={**auth, "Content-Type": "application/json"})
    assert r.status_code < 500, (path, bad, r.get_data(as_text=True)[:300])
    if r.status_code >= 400:
        payload = r.get_json()
        assert payload["type"] == "error" if url.startswith("/v1/messages") else "error" in payload


@pytest.mark.parametrize("url, body", CASES)
def test_the_shapes_that_once_crashed_are_refused_with_a_400(api, url, body):
    client, auth = api
    if url.startswith("/v1/auth/"):
        bads = [replaced(body, (next(iter(body)),), {}), replaced(body, (next(iter(body)),), [[]])]
    elif url == "/v1/chat/completions":
        bads = [replaced(body, ("messages", 0, "role"), {}), replaced(body, ("messages", 1, "content", 0, "type"), {})]
    else:
        bads = [replaced(body, ("messages", 0, "content", 1, "source", "media_type"), {}),
                replaced(body, ("messages", 0, "role"), [])]
    for bad in bads:
        r = client.post(url, json=bad, headers=auth)
        assert r.status_code in (400, 401), r.get_data(as_text=True)


@pytest.mark.parametrize("url", ["/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens",
                                 "/v1/auth/register", "/v1/auth/login", "/v1/auth/keys"])
def test_json_nested_ten_thousand_deep_is_a_400(api, url):
    client, auth = api
    body = '{"model": "qwen-3-32b", "messages": ' + "[" * 10_000 + "]" * 10_000 + "}"
    r = client.post(url, data=body, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.get_data(as_text=True)


def test_nesting_the_parser_accepts_but_the_pipeline_cannot_follow_is_a_400_and_logged(api, app):
    from kyma.models import RequestLog

    client, auth = api
    deep = nested(random.randint(600, 900))  # parses, but is past what a recursive walk of it can follow
    body = dict(CHAT, tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                                          "x": deep}}}])
    r = client.post("/v1/chat/completions", data=json.dumps(body), headers={**auth, "Content-Type": "application/json"})
    assert r.status_code in (200, 400)
    if r.status_code == 400:
        assert r.headers["X-Request-Id"]
        with app.app_context():
            assert RequestLog.get(RequestLog.request_id == r.headers["X-Request-Id"]).status == 400


@pytest.mark.parametrize("path", ["/v1/auth/keys/99999999999999999999", "/v1/auth/keys/0"])
def test_ids_beyond_a_row_id_are_not_found(api, path):
    client, auth = api
    r = client.delete(path, headers=auth)
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"


def test_page_ids_beyond_a_row_id_are_not_found(app):
    client = app.test_client()
    assert client.get("/dashboard/requests/99999999999999999999").status_code == 404
    assert client.post("/dashboard/keys/99999999999999999999/revoke").status_code == 404


@pytest.mark.parametrize("url, body", CASES)
@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400", '"\\ud800"', '"a\\udc00b"'])
def test_numbers_and_strings_json_allows_but_nothing_can_carry_are_a_400(api, url, body, raw):
    client, auth = api
    field = next(iter(body))
    text = json.dumps(body).replace(json.dumps(body[field]), raw, 1) if field != "model" else \
        json.dumps(body).replace('"qwen-3-32b"', raw, 1)
    r = client.post(url, data=text, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.get_json() is not None, (raw, r.get_data(as_text=True)[:200])


def test_raw_surrogate_bytes_are_not_utf8_and_a_400(api):
    client, auth = api
    body = json.dumps(CHAT).encode().replace(b"be brief", b"be \xed\xa0\x80brief")
    r = client.post("/v1/chat/completions", data=body, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400


@pytest.mark.parametrize("stream", [False, True])
def test_a_stream_nested_just_under_the_parsers_limit_is_a_400(api, stream):
    client, auth = api
    text = json.dumps(dict(CHAT, stream=stream)).replace('"temperature": 0.5',
                                                         '"temperature": 0.5, "deep": ' + "[" * 970 + "]" * 970)
    r = client.post("/v1/chat/completions", data=text, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.get_data(as_text=True)
