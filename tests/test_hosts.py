"""A spoofed Host never reaches a published URL: KYMA_PUBLIC_URL and KYMA_ALLOWED_HOSTS."""

from __future__ import annotations

import pytest

from kyma.hosts import hostname

PUBLISHING = ("/v1/config", "/llms.txt", "/v1/models/recommend?agent=cline", "/")


@pytest.fixture()
def host_client(make_app):
    """host_client(**settings) → a test client of an app with no allowed hosts but those given."""
    return lambda **settings: make_app(**settings).test_client()


@pytest.mark.parametrize("path", PUBLISHING)
def test_a_host_nobody_allowed_is_refused_before_anything_is_published(host_client, path):
    client = host_client()
    r = client.get(path, headers={"Host": "evil.example"})
    body = r.get_data(as_text=True)
    assert r.status_code == 400 and "//evil.example" not in body and "KYMA_PUBLIC_URL" in body
    assert client.get(path, headers={"Host": "127.0.0.1:8080"}).status_code == 200
    assert "http://127.0.0.1:8080" in client.get(path, headers={"Host": "127.0.0.1:8080"}).get_data(as_text=True)


def test_an_api_refusal_is_json_in_the_endpoints_protocol(host_client):
    client = host_client()
    r = client.get("/v1/models", headers={"Host": "evil.example"})
    assert r.status_code == 400 and r.get_json()["error"]["type"] == "invalid_request_error"
    r = client.post("/v1/messages", json={}, headers={"Host": "evil.example"})
    assert r.status_code == 400 and r.get_json()["type"] == "error"


def test_health_checks_by_address_still_answer(host_client):
    client = host_client()
    assert client.get("/healthz", headers={"Host": "10.0.0.5:8080"}).status_code == 200


@pytest.mark.parametrize("path", PUBLISHING)
def test_the_public_url_is_what_is_published_whatever_the_host(host_client, path):
    client = host_client(public_url="https://llm.example.com")
    body = client.get(path, headers={"Host": "127.0.0.1:8080"}).get_data(as_text=True)
    assert "https://llm.example.com" in body and "127.0.0.1" not in body
    assert client.get(path, headers={"Host": "llm.example.com"}).status_code == 200
    assert client.get(path, headers={"Host": "evil.example"}).status_code == 400


def test_allowed_hosts_add_names_and_a_star_allows_any(host_client):
    client = host_client(allowed_hosts=("gw.internal",))
    assert client.get("/v1/config", headers={"Host": "gw.internal:8080"}).status_code == 200
    assert client.get("/v1/config", headers={"Host": "localhost"}).status_code == 400  # the list replaces the default
    anyone = host_client(allowed_hosts=("*",))
    assert anyone.get("/v1/config", headers={"Host": "whatever.example"}).status_code == 200


def test_a_public_url_that_is_not_one_is_refused_at_start(monkeypatch):
    from kyma.config import Settings

    monkeypatch.setenv("KYMA_PUBLIC_URL", "llm.example.com")
    with pytest.raises(ValueError, match="KYMA_PUBLIC_URL"):
        Settings.from_env({"secret_key": "s"})


@pytest.mark.parametrize("header, name", [("Example.COM:443", "example.com"), ("[::1]:8080", "::1"), ("::1", "::1"),
                                          ("127.0.0.1", "127.0.0.1"), ("[0:0:0:0:0:0:0:1]", "::1"),
                                          ("localhost:80@evil.com", ""), ("[::1]@evil.com", ""),
                                          ("[::1].evil.com", ""), ("evil.com/x", ""), ("", "")])
def test_hostname(header, name):
    assert hostname(header) == name
