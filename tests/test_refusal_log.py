"""Every API request gets a request-log row: refused ones with the model they named, unknown routes too,
and never a credential."""

from __future__ import annotations

import json

import pytest

from kyma.models import RequestLog
from tests.conftest import register

CHAT = {"model": "kimi-k2.5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def logged(app, response) -> RequestLog:
    """The request-log row of a response, found by its X-Request-Id."""
    with app.app_context():
        return RequestLog.get(RequestLog.request_id == response.headers["X-Request-Id"])


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/completions", "/v1/embeddings",
                                  "/v1/responses"])
def test_a_401_keeps_the_model_the_client_asked_for(app, client, path):
    body = dict(CHAT, prompt="hi", input="hi")
    r = client.post(path, json=body, headers={"Authorization": "Bearer ky-wrong-key-123456"})
    assert r.status_code == 401
    row = logged(app, r)
    assert (row.status, row.model_requested, row.account_id, row.error_code) == (401, "kimi-k2.5", None,
                                                                                  "invalid_api_key")


def test_a_401_with_no_json_body_is_logged_without_a_model(app, client):
    r = client.post("/v1/chat/completions", data=b"not json", headers={"Authorization": "Bearer ky-wrong"})
    assert r.status_code == 401 and logged(app, r).model_requested == ""


def test_an_unknown_route_is_a_logged_404_with_no_account(app, client):
    r = client.post("/v1/chat/completion", json=CHAT, headers={"X-Request-Id": "typo-1"})
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    row = logged(app, r)
    assert r.headers["X-Request-Id"].startswith("typo-1.")
    assert (row.status, row.endpoint, row.model_requested, row.account_id) == (404, "unknown", "kimi-k2.5", None)
    assert row.error_code == "not_found"


def test_a_refusal_after_the_key_is_read_keeps_the_errors_code(app, client):
    reg = register(client, "codes@example.com")
    auth = {"Authorization": f"Bearer {reg['api_key']}"}
    unknown = client.post("/v1/chat/completions", json=dict(CHAT, model="no-such-model"), headers=auth)
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "model_not_found"
    # glm-5.1 at its full output tokens plus a ~100k-token prompt costs more than the signup credit.
    broke = client.post("/v1/chat/completions", headers=auth, json={
        "model": "glm-5.1", "max_tokens": 65536, "messages": [{"role": "user", "content": "word " * 100_000}]})
    assert broke.status_code == 402 and broke.json["error"]["code"] == "insufficient_credits"
    assert (logged(app, unknown).error_code, logged(app, unknown).account_id) == ("model_not_found", int(reg["user_id"]))
    assert logged(app, broke).error_code == "insufficient_credits"
    # About 40k tokens for a 32k window, and no fallback model allowed to take them.
    too_long = client.post("/v1/chat/completions", headers=auth, json={
        "model": "qwen-3-32b", "max_tokens": 8, "provider": {"allow_fallbacks": False},
        "messages": [{"role": "user", "content": "word " * 40_000}]})
    assert too_long.status_code == 400 and too_long.json["error"]["code"] == "context_length_exceeded"
    assert logged(app, too_long).error_code == "context_length_exceeded"
    # No upstream listens here: the request is held, tried, fails, and its row names the code it answered.
    failed = client.post("/v1/chat/completions", json=dict(CHAT, model="fast"), headers=auth)
    assert failed.status_code == 502 and failed.json["error"]["code"]
    assert logged(app, failed).error_code == failed.json["error"]["code"]


def test_a_key_in_an_unknown_path_is_neither_echoed_nor_logged(app, client):
    secret = "ky-0123456789abcdef0123456789abcdef"
    r = client.get(f"/v1/keys/{secret}/x", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 404 and secret not in r.get_data(as_text=True)
    row = logged(app, r)
    assert secret not in row.error and "/v1/keys/" in row.error


def test_a_wrong_method_is_a_logged_405(app, client):
    r = client.get("/v1/chat/completions")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    row = logged(app, r)
    assert (row.status, row.endpoint) == (405, "chat")


def test_a_body_over_the_size_limit_is_a_logged_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    r = client.post("/v1/chat/completions", data=json.dumps(dict(CHAT, pad="x" * 2000)),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert (logged(app, r).status, logged(app, r).model_requested) == (413, "")


def test_the_pages_keep_their_html_404_unlogged(app, client):
    r = client.get("/no-such-page")
    assert r.status_code == 404 and "X-Request-Id" not in r.headers
    with app.app_context():
        assert RequestLog.select().count() == 0


def test_a_model_name_longer_than_its_column_is_cut_not_lost(app, client):
    r = client.post("/v1/chat/completions", json=dict(CHAT, model="m" * 300), headers={"Authorization": "Bearer ky-x"})
    assert r.status_code == 401 and logged(app, r).model_requested == "m" * 100


@pytest.mark.integration
def test_refusals_are_logged_by_a_running_gateway(gateway):
    """The same on the database the gateway really uses (PostgreSQL refuses a value wider than its column)."""
    import requests

    from tests.servers import db_rows

    long_model = requests.post(f"{gateway.url}/v1/chat/completions", json=dict(CHAT, model="m" * 300),
                               headers={"Authorization": "Bearer ky-wrong"}, timeout=10)
    unrouted = requests.post(f"{gateway.url}/v1/chat/complete", json=CHAT, timeout=10)
    assert (long_model.status_code, unrouted.status_code) == (401, 404)
    rows = {rid: (status, model, account, code) for rid, status, model, account, code in db_rows(
        gateway.env, "SELECT request_id, status, model_requested, account_id, error_code FROM requestlog"
        " WHERE request_id IN ({p}, {p})",
        long_model.headers["X-Request-Id"], unrouted.headers["X-Request-Id"])}
    assert rows == {long_model.headers["X-Request-Id"]: (401, "m" * 100, None, "invalid_api_key"),
                    unrouted.headers["X-Request-Id"]: (404, "kimi-k2.5", None, "not_found")}


def test_a_routing_refusal_is_written_through_the_group_committer(app, client, monkeypatch):
    """One route for every request-log write: a refusal joins the worker's group like the pipeline's rows."""
    from kyma.services import group_commit

    grouped = []
    run = group_commit.run
    monkeypatch.setattr(group_commit, "run", lambda work, **kw: grouped.append(work) or run(work, **kw))
    r = client.post("/v1/chat/completion", json=CHAT)
    assert r.status_code == 404 and logged(app, r).status == 404
    assert len(grouped) == 1
