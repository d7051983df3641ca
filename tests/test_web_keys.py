"""The keys page's limit forms through the Flask test client: htmx fragments, plain posts, CSRF, errors."""

from __future__ import annotations

import html
from datetime import datetime

from kyma.models import ApiKey
from tests.test_web import HX, account_id, browser, client, csrf_of, log_request, sign_up  # noqa: F401

LIMITS = {"credit_limit": "2.50", "expires_at": "2099-01-31T12:30", "allowed_models": "fast, kimi-k2.5"}


def test_create_form_sets_limits_and_the_table_shows_them_with_spend(client):
    sign_up(client)
    created = client.post("/dashboard/keys", data={"name": "ci", **LIMITS},
                          headers={**HX, "X-CSRF-Token": csrf_of(client)})
    assert created.status_code == 201
    key = ApiKey.get(ApiKey.name == "ci")
    assert key.credit_limit_micros == 2_500_000 and key.expires_at == datetime(2099, 1, 31, 12, 30)
    assert key.allowed_models == '["fast", "kimi-k2.5"]'
    log_request(account_id("web@example.com"), api_key=key.id, cost_micros=1234)
    text = client.get("/dashboard/keys").get_data(as_text=True)
    assert "$2.50 limit" in text and "models: fast, kimi-k2.5" in text and "$0.0012" in text
    assert 'value="2.50"' in text and 'value="2099-01-31T12:30"' in text and 'value="fast, kimi-k2.5"' in text


def test_edit_limits_works_as_a_plain_form_post_and_blank_fields_clear(client):
    sign_up(client)
    key = ApiKey.get(ApiKey.name == "default")
    token = csrf_of(client)
    page = client.post(f"/dashboard/keys/{key.id}/limits", data={**LIMITS, "csrf_token": token})
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True)  # no JavaScript: a whole page
    assert ApiKey.get_by_id(key.id).credit_limit_micros == 2_500_000
    cleared = client.post(f"/dashboard/keys/{key.id}/limits",
                          data={"credit_limit": "", "expires_at": "", "allowed_models": "", "csrf_token": token})
    assert cleared.status_code == 200
    row = ApiKey.get_by_id(key.id)
    assert (row.credit_limit_micros, row.expires_at, row.allowed_models) == (None, None, None)


def test_edit_limits_needs_the_csrf_token_and_refuses_bad_values(client):
    sign_up(client)
    key = ApiKey.get(ApiKey.name == "default")
    assert client.post(f"/dashboard/keys/{key.id}/limits", data=LIMITS, headers=HX).status_code == 403
    for field, value in (("credit_limit", "lots"), ("expires_at", "soon"), ("allowed_models", "nope")):
        resp = client.post(f"/dashboard/keys/{key.id}/limits", data={field: value},
                           headers={**HX, "X-CSRF-Token": csrf_of(client)})
        assert resp.status_code == 400 and f"'{field}'" in html.unescape(resp.get_data(as_text=True))
    assert ApiKey.get_by_id(key.id).credit_limit_micros is None
    other = client.post("/dashboard/keys/999999/limits", data=LIMITS, headers={**HX, "X-CSRF-Token": csrf_of(client)})
    assert other.status_code == 404
