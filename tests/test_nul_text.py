"""A NUL (U+0000) anywhere a request can carry text is a 4xx, never a 500, on SQLite and on PostgreSQL.

PostgreSQL refuses NUL in any text value, so each of these was a 500 there (SQLite stores NUL).
"""

from __future__ import annotations

import pytest

from kyma.models import ApiKey, RequestLog, RouteOutcome
from kyma.services import recording, responses_store
from tests.conftest import PASSWORD, register

NUL = "\u0000"


@pytest.fixture()
def app(make_app, backend_db):
    return make_app(database_url=backend_db)


@pytest.fixture()
def api(app):
    c = app.test_client()
    key = register(c, "ada@example.com", PASSWORD)["api_key"]
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return c


def logged(app, **where) -> list[RequestLog]:
    with app.app_context():
        return list(RequestLog.select().where(*[getattr(RequestLog, k) == v for k, v in where.items()]))


# --- what is stored: the request log, stored responses ---


MODEL_BODIES = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"prompt": "hi"},
    "/v1/embeddings": {"input": "hi"},
    "/v1/responses": {"input": "hi"},
    "/v1/messages": {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
}


def test_a_nul_in_the_model_name_is_a_404_whose_log_row_names_the_model(app, api):
    for path, body in MODEL_BODIES.items():
        resp = api.post(path, json={"model": f"no{NUL}such", **body})
        assert resp.status_code == 404, path
        rows = logged(app, request_id=resp.headers["X-Request-Id"])
        assert [(r.status, r.model_requested, r.error_code) for r in rows] == [
            (404, "no\ufffdsuch", "model_not_found")], path


def test_the_request_log_replaces_nul_in_every_text_it_is_given(app):
    record = recording.RequestRecord(request_id="r-nul", endpoint="chat", status=502, model_requested=f"m{NUL}",
                                     error=f"upstream said {NUL}", note=f"n{NUL}",
                                     outcomes=[recording.AttemptRecord("m", "p", False, 502, error=f"e{NUL}")])
    with app.app_context():
        recording.finish(record, held=False)
        row = RequestLog.get(RequestLog.request_id == "r-nul")
        recording.mark_failed(record, 500, f"late {NUL}", "internal_error")
        assert (row.model_requested, row.error, row.note) == ("m\ufffd", "upstream said \ufffd", "n\ufffd")
        assert RequestLog.get(RequestLog.request_id == "r-nul").error == "late \ufffd"
        assert [o.error for o in RouteOutcome.select().where(RouteOutcome.request_id == "r-nul")] == ["e\ufffd"]


def test_a_stored_response_keeps_nul_in_its_text(app, api):
    """Stored as escaped JSON in text columns: a NUL the model wrote or the client sent comes back intact."""
    response = {"id": "resp_nul", "output": [{"type": "message", "content": [{"text": f"a{NUL}b"}]}],
                "metadata": {"k": f"v{NUL}"}}
    with app.app_context():
        account = ApiKey.get().account_id
        responses_store.save(account, response, [{"role": "user", "content": f"q{NUL}"}], retention_days=1)
        stored = responses_store.load(account, "resp_nul")
    assert stored.response == response and stored.input_items == [{"role": "user", "content": f"q{NUL}"}]


# --- JSON fields that name or become a row ---


def test_a_nul_in_an_api_key_name_is_a_400(api):
    resp = api.post("/v1/auth/keys", json={"name": f"ci{NUL}"})
    assert resp.status_code == 400
    assert resp.get_json()["error"]["param"] == "name" and resp.get_json()["error"]["code"] == "nul_character"


def test_a_previous_response_id_with_a_nul_is_not_found(app, api):
    resp = api.post("/v1/responses", json={"model": "fast", "input": "hi", "previous_response_id": f"resp_{NUL}"})
    assert resp.status_code == 404 and resp.get_json()["error"]["param"] == "previous_response_id"
    assert [r.status for r in logged(app, request_id=resp.headers["X-Request-Id"])] == [404]
