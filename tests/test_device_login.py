"""Device-code log-in: a CLI polls /v1/auth/device/token while a signed-in browser approves its code."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from kyma.models import ApiKey, DeviceLogin, utcnow
from kyma.services import device_login
from tests.test_web import browser, csrf_of, sign_up


def start(client, name="kyma-cli") -> dict:
    resp = client.post("/v1/auth/device/code", json={"client_name": name})
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    return resp.get_json()


def poll(client, device_code: str):
    return client.post("/v1/auth/device/token", json={"device_code": device_code})


def age_last_poll(seconds: int = 60) -> None:
    """Move every recorded poll into the past, as if the CLI had waited its interval."""
    DeviceLogin.update(last_polled_at=utcnow() - timedelta(seconds=seconds)).execute()


def approve(web, user_code: str, decision: str = "approve"):
    page = web.get(f"/device?code={user_code.lower()}")  # typed in lower case: still the same code
    assert page.status_code == 200 and user_code in page.get_data(as_text=True)
    return web.post("/device", data={"code": user_code, "decision": decision, "csrf_token": csrf_of(web)})


def test_approved_code_gives_the_cli_one_working_key(app):
    cli, web = app.test_client(), browser(app)
    code = start(cli)
    assert re.fullmatch(r"[B-Z]{4}-[B-Z]{4}", code["user_code"]) and code["interval"] == 5
    assert code["verification_uri_complete"] == f"{code['verification_url']}?code={code['user_code']}"
    pending = poll(cli, code["device_code"])
    assert pending.status_code == 400 and pending.get_json()["error"] == "authorization_pending"
    sign_up(web, "dev@example.com")
    assert "Approved" in approve(web, code["user_code"]).get_data(as_text=True)
    age_last_poll()
    granted = poll(cli, code["device_code"])
    body = granted.get_json()
    assert granted.status_code == 200 and body["email"] == "dev@example.com" and body["token_type"] == "Bearer"
    me = cli.get("/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.get_json()["email"] == "dev@example.com"
    assert ApiKey.get_by_id(body["api_key_id"]).name == "device log-in: kyma-cli"
    age_last_poll()
    again = poll(cli, code["device_code"])  # one approval, one key
    assert again.status_code == 400 and again.get_json()["error"] == "expired_token"
    assert ApiKey.select().where(ApiKey.name.startswith("device")).count() == 1


def test_polling_faster_than_the_interval_is_told_to_slow_down(app):
    cli = app.test_client()
    code = start(cli)
    assert poll(cli, code["device_code"]).get_json()["error"] == "authorization_pending"
    slow = poll(cli, code["device_code"]).get_json()
    assert slow["error"] == "slow_down" and "10 seconds" in slow["error_description"]
    assert DeviceLogin.get().interval == 10  # every later poll must wait longer


def test_denied_expired_and_unknown_codes(app):
    cli, web = app.test_client(), browser(app)
    sign_up(web, "deny@example.com")
    code = start(cli)
    assert "Denied" in approve(web, code["user_code"], "deny").get_data(as_text=True)
    assert poll(cli, code["device_code"]).get_json()["error"] == "access_denied"
    late = start(cli)
    DeviceLogin.update(expires_at=utcnow() - timedelta(seconds=1)).where(DeviceLogin.status == "pending").execute()
    assert poll(cli, late["device_code"]).get_json()["error"] == "expired_token"
    gone = web.get(f"/device?code={late['user_code']}")
    assert gone.status_code == 404 and "expired" in gone.get_data(as_text=True)
    assert poll(cli, "kd-nothing").get_json()["error"] == "invalid_grant"
    for body in ({"json": {}}, {"data": b"not json"}):  # device-flow clients read only the OAuth shape
        bad = cli.post("/v1/auth/device/token", **body)
        assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_request"


def test_the_approval_page_needs_a_session_and_a_csrf_token(app):
    cli, web = app.test_client(), browser(app)
    code = start(cli)
    anonymous = web.get(f"/device?code={code['user_code']}")
    assert anonymous.status_code in (302, 303) and "/login" in anonymous.headers["Location"]
    sign_up(web, "csrf@example.com")
    forged = web.post("/device", data={"code": code["user_code"], "decision": "approve"})
    assert forged.status_code == 403
    assert DeviceLogin.get().status == "pending"


def test_codes_are_stored_only_as_digests_and_pruned_after_expiry(app):
    code = start(app.test_client())
    row = DeviceLogin.get()
    assert code["device_code"] not in (row.device_hash, row.user_hash)
    assert device_login.prune(now=utcnow() + timedelta(minutes=30)) == 0
    assert device_login.prune(now=utcnow() + timedelta(hours=2)) == 1


def test_code_requests_are_throttled_per_network(app):
    cli = app.test_client()
    for _ in range(device_login.MAX_CODES_PER_HOUR):
        start(cli)
    refused = cli.post("/v1/auth/device/code", data=b"")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0


@pytest.mark.parametrize("raw", ["bcdf-ghjk", " BCDF GHJK ", "BCDFGHJK"])
def test_user_codes_are_read_forgivingly(raw):
    assert device_login.normalize_user_code(raw) == "BCDFGHJK"


@pytest.mark.parametrize("name", ["\x00", "a\nb", "x" * 101, 42])
def test_a_client_name_that_cannot_be_shown_is_a_400(app, name):
    resp = app.test_client().post("/v1/auth/device/code", json={"client_name": name})
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "client_name"
