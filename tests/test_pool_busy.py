"""A worker whose database connections are all in use answers 503 with Retry-After, in each protocol's shape."""

from __future__ import annotations

import pytest
from playhouse.pool import MaxConnectionsExceeded

from kyma.api import chat, messages


@pytest.fixture()
def exhausted(monkeypatch):
    def busy(_request):
        raise MaxConnectionsExceeded("Max connections exceeded, timed out attempting to connect.")

    monkeypatch.setattr(chat, "principal_from_request", busy)
    monkeypatch.setattr(messages, "principal_from_request", busy)


def test_an_openai_client_is_told_to_retry(client, exhausted):
    r = client.post("/v1/chat/completions", headers={"Authorization": "Bearer ky-x"},
                    json={"model": "kimi-k2.5", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.get_json()["error"]["code"] == "gateway_busy"
    assert "not billed" in r.get_json()["error"]["message"]


def test_an_anthropic_client_is_told_it_is_overloaded(client, exhausted):
    r = client.post("/v1/messages", headers={"x-api-key": "ky-x", "anthropic-version": "2023-06-01"},
                    json={"model": "kimi-k2.5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 529
    assert r.headers["Retry-After"] == "1"
    assert r.get_json()["error"]["type"] == "overloaded_error"
