"""The served contract for /v1/messages: its 5xx answers and the x-api-key header, checked against behaviour."""

from __future__ import annotations

import pytest

from tests.conftest import register


def spec(client) -> dict:
    return client.get("/v1/openapi.json").get_json()


def effective_security(doc: dict, operation: dict) -> list[dict]:
    return operation.get("security", doc.get("security", []))


@pytest.mark.parametrize("status", ["500", "502", "504"])
def test_messages_documents_its_server_errors_in_anthropic_shape(client, status):
    response = spec(client)["paths"]["/messages"]["post"]["responses"][status]
    assert response["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/AnthropicError"


def test_x_api_key_is_a_scheme_offered_wherever_bearer_is(client):
    doc = spec(client)
    assert doc["components"]["securitySchemes"]["ApiKeyAuth"] == {
        **doc["components"]["securitySchemes"]["ApiKeyAuth"], "type": "apiKey", "in": "header", "name": "x-api-key"}
    secured = 0
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            alternatives = effective_security(doc, operation)
            if {"BearerAuth": []} in alternatives:
                secured += 1
                assert {"ApiKeyAuth": []} in alternatives, (method, path)
    assert secured >= 10
    for path in ("/messages", "/messages/count_tokens"):
        assert {"ApiKeyAuth": []} in effective_security(doc, doc["paths"][path]["post"])


@pytest.mark.parametrize("method,path,body", [
    ("get", "/v1/credits/balance", None), ("get", "/v1/auth/me", None),
    ("post", "/v1/messages/count_tokens", {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}),
])
def test_the_x_api_key_header_really_authenticates(client, method, path, body):
    key = register(client, "contract@example.com")["api_key"]
    assert getattr(client, method)(path, json=body).status_code == 401
    assert getattr(client, method)(path, json=body, headers={"x-api-key": key}).status_code == 200


def test_the_documented_502_is_what_messages_answers_when_every_route_fails(client):
    # The in-process app's providers are unreachable, so every route fails before the first byte.
    key = register(client, "contract@example.com")["api_key"]
    resp = client.post("/v1/messages", headers={"x-api-key": key},
                       json={"model": "fast", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 502
    assert "502" in spec(client)["paths"]["/messages"]["post"]["responses"]
    body = resp.get_json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error" and body["error"]["message"]
