"""A NUL (U+0000) anywhere a request can carry text is a 4xx, never a 500, on SQLite and on PostgreSQL.

PostgreSQL refuses NUL in any text value, so each of these was a 500 there (SQLite stores NUL).
"""

from __future__ import annotations

import pytest

from kyma.models import ApiKey, LedgerEntry, RequestLog, RouteOutcome
from kyma.services import admins, recording, responses_store
from tests.conftest import PASSWORD, register
from tests.test_web import HX, browser, csrf_of, sign_up

NUL = "\u0000"


@pytest.fixture()
def app(make_app, backend_db):
    return make_app(database_url=backend_db)


@pytest.fixture()
def web(app):
    """A browser signed in to the dashboard, as an admin of the console too."""
    c = browser(app)
    sign_up(c, "ops@example.com")
    with app.app_context():
        admins.set_admin("ops@example.com", True, actor="test")
    return c


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


# --- paths, query strings and form fields, on every route ---


PAGE_FILTERS = [("/dashboard", "model"), ("/dashboard/requests", "q"), ("/dashboard/requests.csv", "model"),
                ("/models", "endpoint"), ("/admin/accounts", "q"), ("/admin/traffic", "provider"),
                ("/admin/traffic", "error")]


def test_a_nul_in_a_page_filter_is_a_400_page(web):
    for path, arg in PAGE_FILTERS:
        resp = web.get(path, query_string={arg: f"a{NUL}b"})
        assert (resp.status_code, resp.mimetype) == (400, "text/html"), path
        assert f"query parameter &#39;{arg}&#39; contains a NUL character" in resp.get_data(as_text=True), path


def test_htmx_gets_the_nul_refusal_in_its_flash_area(web):
    resp = web.get("/dashboard/requests", query_string={"model": NUL}, headers=HX)
    assert resp.status_code == 400 and resp.headers["HX-Retarget"] == "#flash"


def test_a_stranger_gets_the_consoles_404_before_the_nul_refusal(app):
    c = browser(app)
    sign_up(c, "cust@example.com")
    assert c.get("/admin/accounts", query_string={"q": NUL}).status_code == 404


def test_a_nul_in_a_page_path_is_a_404(web):
    assert web.get("/no-such-page%00").status_code == 404
    assert "Not Found" in web.get("/dashboard/requests/1%00").get_data(as_text=True)


def test_a_nul_in_the_login_forms_next_is_a_400_that_goes_nowhere(app):
    c = browser(app)
    sign_up(c, "nx@example.com")
    c.post("/logout", data={"csrf_token": csrf_of(c)})
    form = {"email": "nx@example.com", "password": "secret-pw", "next": "/\x00/evil.example", "csrf_token": csrf_of(c)}
    for headers in ({}, HX):
        resp = c.post("/login", data=form, headers=headers)
        assert resp.status_code == 400 and "Location" not in resp.headers and "HX-Redirect" not in resp.headers


def test_a_nul_in_a_key_name_form_field_creates_no_key(app, web):
    resp = web.post("/dashboard/keys", data={"name": f"laptop{NUL}", "csrf_token": csrf_of(web)})
    assert resp.status_code == 400 and "form field &#39;name&#39;" in resp.get_data(as_text=True)
    with app.app_context():
        assert ApiKey.select().where(ApiKey.name.startswith("laptop")).count() == 0


def test_a_nul_in_the_consoles_credit_form_grants_nothing(app, web):
    victim = int(register(app.test_client(), "vic@example.com", PASSWORD)["user_id"])
    for field in ("note", "idempotency_key"):
        form = {"usd": "5", "note": "goodwill", "idempotency_key": "grant-1", field: f"x{NUL}",
                "csrf_token": csrf_of(web)}
        resp = web.post(f"/admin/accounts/{victim}/credit", data=form)
        assert resp.status_code == 400 and "Not done" in resp.get_data(as_text=True), field
    with app.app_context():
        assert LedgerEntry.select().where(LedgerEntry.kind == "grant").count() == 0


def test_a_nul_in_an_api_path_is_an_openai_404_and_logged(app, api):
    for method, path in [("GET", "/v1/responses/resp_a%00b"), ("DELETE", "/v1/responses/resp_a%00b"),
                         ("GET", "/v1/responses/resp_a%00b/input_items"), ("GET", "/v1/models/a%00b"),
                         ("GET", "/v1/no-such-route%00")]:
        resp = api.open(path, method=method)
        assert resp.status_code == 404, path
        assert resp.get_json()["error"]["code"] == "not_found", path
        assert [r.status for r in logged(app, request_id=resp.headers["X-Request-Id"])] == [404], path


def test_a_nul_in_an_api_query_is_an_openai_400_and_logged(app, api):
    for path in ["/v1/models?kind=%00", "/v1/models/uptime?model=a%00", "/v1/chat/completions?x=%00"]:
        resp = api.get(path) if "models" in path else api.post(path, json={"model": "no-such-model"})
        assert resp.status_code == 400, path
        error = resp.get_json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "nul_character"), path
        rows = logged(app, request_id=resp.headers["X-Request-Id"])
        assert [(r.status, r.error_code) for r in rows] == [(400, "nul_character")], path


def test_a_nul_in_a_messages_query_is_an_anthropic_400(api):
    body = {"model": "no-such-model", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    resp = api.post("/v1/messages?beta=%00", json=body)
    assert resp.status_code == 400  # before the model is looked up (a 404)
    assert resp.get_json()["type"] == "error" and resp.get_json()["error"]["type"] == "invalid_request_error"
