"""/v1/auth and the account services, through the Flask test client on a fresh SQLite database."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from kyma.models import Account, ApiKey, LedgerEntry, RateCounter, SessionToken, utcnow
from kyma.services import accounts, counters, passwords
from tests.conftest import PASSWORD, register


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def error_of(resp) -> dict:
    return resp.get_json()["error"]


# --- register --------------------------------------------------------------------------------


def test_register_returns_key_session_and_signup_credit(app, client):
    body = register(client, email="  Ada@Example.COM ")
    assert body["api_key"].startswith("ky-") and len(body["api_key"]) == 46
    assert body["session_token"].startswith("ks-") and len(body["session_token"]) == 46
    assert body["email"] == "ada@example.com"
    assert body["balance"] == 0.5
    assert body["user_id"] == str(int(body["user_id"]))
    assert body["expires_at"].endswith("Z")
    with app.app_context():
        account = Account.get()
        entries = list(LedgerEntry.select().where(LedgerEntry.account == account.id))
        assert [(e.kind, e.amount_micros) for e in entries] == [("signup", 500_000)]
        assert account.balance_micros == 500_000
        assert account.password_hash.startswith("$2b$04$")


def test_register_response_is_not_cacheable(client):
    resp = client.post("/v1/auth/register", json={"email": "a@b.io", "password": PASSWORD})
    assert resp.headers["Cache-Control"] == "no-store"


def test_signup_credit_follows_settings(make_app):
    body = register(make_app(signup_credit_usd=2.25).test_client())
    assert body["balance"] == 2.25


@pytest.fixture()
def strict_app(make_app):
    """An app with the production sign-up limit (5 per address per hour)."""
    return make_app(signup_max_per_hour=5)


def test_signups_per_address_are_limited_before_hashing(strict_app, monkeypatch):
    hashed = []
    real_hash = accounts.hash_password
    monkeypatch.setattr(accounts, "hash_password", lambda pw, rounds: hashed.append(pw) or real_hash(pw, rounds))
    client = strict_app.test_client()
    for i in range(5):
        register(client, email=f"farm{i}@example.com")
    resp = client.post("/v1/auth/register", json={"email": "farm5@example.com", "password": PASSWORD})
    assert resp.status_code == 429
    assert error_of(resp)["type"] == "rate_limit" and error_of(resp)["code"] == "signup_throttled"
    assert 1 <= int(resp.headers["Retry-After"]) <= 3600
    assert len(hashed) == 5  # the refused sign-up never reached bcrypt
    with strict_app.app_context():
        assert Account.select().count() == 5
    # Another address still signs up.
    other = client.post("/v1/auth/register", json={"email": "farm5@example.com", "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other.status_code == 200


@pytest.mark.parametrize("proxies", [0, 1])
def test_the_client_address_comes_from_the_proxy_only_when_one_is_trusted(make_app, proxies):
    client = make_app(signup_max_per_hour=1, trusted_proxies=proxies).test_client()

    def sign_up(email: str, forwarded_for: str) -> int:
        # Behind nginx every request arrives from the proxy's own address, 10.0.0.2.
        return client.post("/v1/auth/register", json={"email": email, "password": PASSWORD},
                           headers={"X-Forwarded-For": forwarded_for},
                           environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code

    assert sign_up("a@example.com", "203.0.113.1") == 200
    # Trusted: another client behind the same proxy is another address. Untrusted: a client choosing
    # its own X-Forwarded-For is still the one address it connects from.
    assert sign_up("b@example.com", "203.0.113.2") == (200 if proxies else 429)
    # The last (proxy-appended) entry counts: a forged first entry changes nothing.
    assert sign_up("c@example.com", "198.51.100.9, 203.0.113.2") == 429


def test_a_signup_whose_commit_answer_was_lost_is_looked_up_not_reported_failed(app, monkeypatch):
    """Reported failed after it landed, the sign-up's retry finds its email taken: no key, no session."""
    from kyma.services import ledger
    from tests.lost_answer import fail_first_commit

    settings = app.extensions["kyma"].settings
    real_hash = accounts.hash_password

    def hash_then_lose_the_next_answer(*args):  # after the sign-up counters' own commits
        fail_first_commit(monkeypatch, "after")
        return real_hash(*args)

    monkeypatch.setattr(accounts, "hash_password", hash_then_lose_the_next_answer)
    with app.app_context():
        reg = accounts.register("lost@example.com", PASSWORD, settings)
        assert accounts.authenticate(reg.api_key).account_id == reg.account_id
        assert ledger.balance(reg.account_id).balance_micros == reg.balance_micros > 0


def test_the_signup_hour_slides_instead_of_resetting_on_the_clock(strict_app):
    settings = strict_app.extensions["kyma"].settings
    with strict_app.app_context():
        start = utcnow().replace(minute=55, second=0, microsecond=0)
        for i in range(5):
            accounts.register(f"s{i}@example.com", PASSWORD, settings, client_ip="1.2.3.4", now=start)
        with pytest.raises(accounts.RateLimited) as refused:  # a new clock hour, the same sliding one
            accounts.register("s5@example.com", PASSWORD, settings, client_ip="1.2.3.4",
                              now=start + timedelta(minutes=9))
        assert refused.value.headers["Retry-After"] == str(3600 - 9 * 60)  # when the first ones leave it
        assert accounts.register("s5@example.com", PASSWORD, settings, client_ip="1.2.3.4",
                                 now=start + timedelta(minutes=60)).account_id


@pytest.mark.parametrize("first, same, other", [
    ("2001:db8::1", "2001:db8::ffff:1", "2001:db8:0:1::1"),  # one /64 is one subscriber
    ("127.0.0.2", "127.0.0.3", "10.0.0.1"),  # every loopback address is this machine
    ("::ffff:198.51.100.7", "198.51.100.7", "198.51.100.8"),  # IPv4 written as IPv6 is that IPv4
])
def test_one_network_shares_one_signup_allowance(strict_app, first, same, other):
    settings = strict_app.extensions["kyma"].settings
    with strict_app.app_context():
        for i in range(5):
            accounts.register(f"n{i}@example.com", PASSWORD, settings, client_ip=first)
        with pytest.raises(accounts.RateLimited) as refused:
            accounts.register("n5@example.com", PASSWORD, settings, client_ip=same)
        assert "this network" in refused.value.message
        assert accounts.register("n5@example.com", PASSWORD, settings, client_ip=other).account_id


def test_a_global_ceiling_stops_signups_from_many_networks(make_app):
    app = make_app(signup_max_global_per_hour=3)
    settings = app.extensions["kyma"].settings
    with app.app_context():
        for i in range(3):
            accounts.register(f"g{i}@example.com", PASSWORD, settings, client_ip=f"203.0.113.{i + 1}")
        with pytest.raises(accounts.RateLimited) as refused:
            accounts.register("g3@example.com", PASSWORD, settings, client_ip="198.51.100.1")
        assert "right now" in refused.value.message


def test_the_session_cookie_lives_as_long_as_its_session(strict_app):
    client = strict_app.test_client()
    register(client, email="cookie@example.com")
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    resp = client.post("/login", data={"email": "cookie@example.com", "password": PASSWORD, "csrf_token": token},
                       headers={"Origin": "http://localhost"})
    cookie = next(v for k, v in resp.headers.items() if k == "Set-Cookie" and v.startswith("session="))
    expires = datetime.strptime(re.search(r"Expires=([^;]+)", cookie).group(1), "%a, %d %b %Y %H:%M:%S GMT")
    hours = strict_app.extensions["kyma"].settings.session_max_hours
    assert abs((expires - datetime.utcnow()).total_seconds() - hours * 3600) < 300


@pytest.mark.parametrize("payload, param, code", [
    ({"email": "<script>@example.com", "password": PASSWORD}, "email", "invalid_email"),
    ({"email": "a b@example.com", "password": PASSWORD}, "email", "invalid_email"),
    ({"email": "a@exa_mple.com", "password": PASSWORD}, "email", "invalid_email"),
    ({"email": "not-an-email", "password": PASSWORD}, "email", "invalid_email"),
    ({"email": "a@b", "password": PASSWORD}, "email", "invalid_email"),
    ({"email": "x" * 250 + "@b.io", "password": PASSWORD}, "email", "invalid_email"),
    ({"password": PASSWORD}, "email", "missing_field"),
    ({"email": 42, "password": PASSWORD}, "email", "invalid_type"),
    ({"email": "a@b.io"}, "password", "missing_field"),
    ({"email": "a@b.io", "password": ["x"] * 8}, "password", "invalid_type"),
    ({"email": "a@b.io", "password": "12345"}, "password", "password_too_short"),
    ({"email": "a@b.io", "password": "€" * 25}, "password", "password_too_long"),  # 75 bytes
    ({"email": "a@b.io", "password": PASSWORD, "balance": 1e12}, "balance", "forbidden_field"),
])
def test_register_rejects_bad_input_naming_the_field(client, payload, param, code):
    resp = client.post("/v1/auth/register", json=payload)
    assert resp.status_code == 400
    err = error_of(resp)
    assert (err["param"], err["code"], err["type"]) == (param, code, "invalid_request_error")


def test_password_of_exactly_72_bytes_is_accepted(client):
    body = register(client, password="€" * 24)  # 72 bytes
    assert client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "€" * 24}).status_code == 200
    assert body["api_key"]


@pytest.mark.parametrize("data, content_type", [
    (b"", "application/json"),
    (b"{not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b"email=a@b.io&password=secret1", "application/x-www-form-urlencoded"),
])
def test_register_rejects_non_json_bodies(client, data, content_type):
    resp = client.post("/v1/auth/register", data=data, content_type=content_type)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_json"


def test_duplicate_email_is_409_case_insensitively(app, client):
    register(client, email="Foo@x.io")
    resp = client.post("/v1/auth/register", json={"email": "foo@X.io", "password": "other-pass"})
    assert resp.status_code == 409
    assert error_of(resp)["param"] == "email"
    with app.app_context():
        assert Account.select().count() == 1


# --- login / logout ------------------------------------------------------------------------


def test_login_issues_a_new_session_each_time(client):
    reg = register(client)
    first = client.post("/v1/auth/login", json={"email": "ADA@example.com", "password": PASSWORD})
    second = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert first.status_code == second.status_code == 200
    tokens = {reg["session_token"], first.get_json()["session_token"], second.get_json()["session_token"]}
    assert len(tokens) == 3
    assert first.get_json()["user_id"] == reg["user_id"]
    assert first.headers["Cache-Control"] == "no-store"
    me = client.get("/v1/auth/me", headers=bearer(first.get_json()["session_token"]))
    assert me.status_code == 200 and me.get_json()["credential"] == "session"


def test_unknown_email_and_wrong_password_get_identical_401(client):
    register(client)
    wrong = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "wrong-pass"})
    unknown = client.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong-pass"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.data == unknown.data
    assert error_of(wrong)["type"] == "authentication_error"
    assert sorted(wrong.headers.keys()) == sorted(unknown.headers.keys())


@pytest.mark.parametrize("email, password", [("ada@example.com", "€" * 25), ("ada@example.com", ""),
                                             ("", PASSWORD), ("not an email", "x" * 5000)])
def test_any_string_credentials_at_login_are_401_never_400_or_500(client, email, password):
    register(client)
    resp = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 401


def test_a_nul_in_the_login_email_is_401_on_either_backend(make_app, backend_db):
    client = make_app(database_url=backend_db).test_client()
    register(client)
    resp = client.post("/v1/auth/login", json={"email": "\u0000ada@example.com", "password": PASSWORD})
    assert resp.status_code == 401 and error_of(resp)["type"] == "authentication_error"


@pytest.mark.parametrize("payload, param", [({"password": PASSWORD}, "email"), ({"email": "a@b.io"}, "password"),
                                            ({"email": "a@b.io", "password": 7}, "password")])
def test_login_missing_fields_are_400(client, payload, param):
    resp = client.post("/v1/auth/login", json=payload)
    assert resp.status_code == 400 and error_of(resp)["param"] == param


def test_failed_logins_are_throttled_even_for_the_right_password(client):
    register(client)
    for _ in range(5):  # login_max_failures defaults to 5
        assert client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "bad-pass"}).status_code == 401
    resp = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert resp.status_code == 429
    assert error_of(resp)["type"] == "rate_limit"
    assert 1 <= int(resp.headers["Retry-After"]) <= 900
    # Another client address is not blocked by this address's failures.
    other = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other.status_code == 200


def test_throttle_lifts_when_the_window_has_passed(app, client):
    register(client)
    settings = app.extensions["kyma"].settings
    with app.app_context():
        now = utcnow()
        for _ in range(5):
            with pytest.raises(accounts.AuthenticationFailed):
                accounts.login("ada@example.com", "bad-pass", settings, client_ip="1.2.3.4", now=now)
        with pytest.raises(accounts.RateLimited):
            accounts.login("ada@example.com", PASSWORD, settings, client_ip="1.2.3.4", now=now)
        later = now + timedelta(minutes=16)
        assert accounts.login("ada@example.com", PASSWORD, settings, client_ip="1.2.3.4", now=later).token


def test_unknown_emails_are_throttled_too(client):
    for _ in range(5):
        client.post("/v1/auth/login", json={"email": "ghost@example.com", "password": "bad-pass"})
    assert client.post("/v1/auth/login", json={"email": "ghost@example.com", "password": "x-pass"}).status_code == 429


def test_logout_ends_the_session_only(client):
    reg = register(client)
    assert client.post("/v1/auth/logout", headers=bearer(reg["session_token"])).status_code == 200
    assert client.get("/v1/auth/me", headers=bearer(reg["session_token"])).status_code == 401
    assert client.get("/v1/auth/me", headers=bearer(reg["api_key"])).status_code == 200


def test_login_rehashes_when_the_cost_changes(app, client):
    register(client)
    settings = app.extensions["kyma"].settings
    from dataclasses import replace

    with app.app_context():
        accounts.login("ada@example.com", PASSWORD, replace(settings, bcrypt_rounds=5))
        assert Account.get().password_hash.startswith("$2b$05$")


# --- authentication ------------------------------------------------------------------------


def test_key_and_session_work_as_bearer_and_x_api_key(client):
    reg = register(client)
    for headers in (bearer(reg["api_key"]), bearer(reg["session_token"]), {"x-api-key": reg["api_key"]},
                    {"Authorization": f"bearer   {reg['api_key']}"}):
        resp = client.get("/v1/auth/me", headers=headers)
        assert resp.status_code == 200, headers
        assert resp.get_json()["email"] == "ada@example.com"


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic abc"},
    {"Authorization": "Bearer ky-short"},
    {"Authorization": "Bearer sk-" + "a" * 43},
    {"x-api-key": "ky-" + "a" * 43},
])
def test_missing_or_invalid_credentials_are_401(client, headers):
    register(client)
    resp = client.get("/v1/auth/me", headers=headers)
    assert resp.status_code == 401
    assert error_of(resp)["type"] == "authentication_error"
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_a_changed_character_is_refused_and_not_echoed(client):
    key = register(client)["api_key"]
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    resp = client.get("/v1/auth/me", headers=bearer(forged))
    assert resp.status_code == 401
    assert forged not in resp.get_data(as_text=True)


def test_malformed_credentials_cost_no_query(app, client):
    register(client)
    with app.app_context():
        from kyma.db import database

        db = database.obj
        queries = []
        original = db.execute_sql

        def counting(sql, *args, **kwargs):
            queries.append(sql)
            return original(sql, *args, **kwargs)

        db.execute_sql = counting
        try:
            for bad in ("sk-" + "a" * 43, "ky-" + "a" * 10, "kyma-" + "a" * 43, ""):
                with pytest.raises(accounts.AuthenticationFailed):
                    accounts.authenticate(bad)
            assert queries == []
            with pytest.raises(accounts.AuthenticationFailed):  # well-formed: one indexed read
                accounts.authenticate("ky-" + "a" * 43)
            assert len(queries) == 1
        finally:
            db.execute_sql = original


def test_session_idle_expiry(app, client):
    token = register(client)["session_token"]
    with app.app_context():
        past = utcnow() - timedelta(minutes=app.extensions["kyma"].settings.session_idle_minutes + 1)
        SessionToken.update(last_seen_at=past).execute()
    assert client.get("/v1/auth/me", headers=bearer(token)).status_code == 401


def test_session_absolute_expiry_despite_activity(app, client):
    token = register(client)["session_token"]
    with app.app_context():
        SessionToken.update(expires_at=utcnow() - timedelta(seconds=1), last_seen_at=utcnow()).execute()
    assert client.get("/v1/auth/me", headers=bearer(token)).status_code == 401


def test_last_use_is_stamped_at_most_once_a_minute(app, client):
    key = register(client)["api_key"]
    client.get("/v1/auth/me", headers=bearer(key))
    with app.app_context():
        first = ApiKey.get().last_used_at
        assert first is not None
    client.get("/v1/auth/me", headers=bearer(key))
    with app.app_context():
        assert ApiKey.get().last_used_at == first
        ApiKey.update(last_used_at=first - timedelta(minutes=2)).execute()
    client.get("/v1/auth/me", headers=bearer(key))
    with app.app_context():
        assert ApiKey.get().last_used_at > first - timedelta(minutes=2)


# --- me and keys -----------------------------------------------------------------------------


def test_me_shows_account_and_masked_keys(client):
    reg = register(client)
    body = client.get("/v1/auth/me", headers=bearer(reg["api_key"])).get_json()
    assert body["user_id"] == reg["user_id"] and body["balance"] == 0.5 and body["tier"] == 0
    assert body["credential"] == "api_key"
    assert len(body["keys"]) == 1
    assert reg["api_key"] not in str(body)
    assert "password_hash" not in body and "key_hash" not in str(body)


def test_key_lifecycle(client):
    reg = register(client)
    auth = bearer(reg["session_token"])
    created = client.post("/v1/auth/keys", json={"name": "ci"}, headers=auth)
    assert created.status_code == 201
    new = created.get_json()
    assert new["key"].startswith("ky-") and new["name"] == "ci" and new["key"].startswith(new["prefix"])
    assert created.headers["Cache-Control"] == "no-store"
    assert client.get("/v1/auth/me", headers=bearer(new["key"])).status_code == 200

    listed = client.get("/v1/auth/keys", headers=auth).get_json()["keys"]
    assert [k["name"] for k in listed] == ["default", "ci"]
    assert new["key"] not in str(listed) and reg["api_key"] not in str(listed)
    assert listed[1]["masked"] == f"{new['key'][:7]}…{new['key'][-4:]}"

    gone = client.delete(f"/v1/auth/keys/{new['id']}", headers=auth)
    assert gone.status_code == 200 and gone.get_json() == {"id": new["id"], "revoked": True}
    # Revocation takes effect on the very next request.
    assert client.get("/v1/auth/me", headers=bearer(new["key"])).status_code == 401
    listed = client.get("/v1/auth/keys", headers=auth).get_json()["keys"]
    assert [k["revoked"] for k in listed] == [False, True]
    assert client.delete(f"/v1/auth/keys/{new['id']}", headers=auth).status_code == 200  # idempotent


def test_create_key_without_body_gets_default_name(client):
    reg = register(client)
    resp = client.post("/v1/auth/keys", headers=bearer(reg["api_key"]))
    assert resp.status_code == 201 and resp.get_json()["name"] == "default"


@pytest.mark.parametrize("payload, param", [({"name": 5}, "name"), ({"name": "x" * 101}, "name"),
                                            ({"name": "mine", "user_id": "1"}, "user_id")])
def test_create_key_bad_input(client, payload, param):
    reg = register(client)
    resp = client.post("/v1/auth/keys", json=payload, headers=bearer(reg["api_key"]))
    assert resp.status_code == 400 and error_of(resp)["param"] == param


def test_key_routes_need_credentials(client):
    assert client.get("/v1/auth/keys").status_code == 401
    assert client.post("/v1/auth/keys", json={"name": "x"}).status_code == 401
    assert client.delete("/v1/auth/keys/1").status_code == 401
    assert client.post("/v1/auth/logout").status_code == 401


def test_another_accounts_key_cannot_be_revoked(app, client):
    alice = register(client, email="alice@example.com")
    bob = register(client, email="bob@example.com")
    resp = client.delete(f"/v1/auth/keys/{bob['api_key_id']}", headers=bearer(alice["api_key"]))
    assert resp.status_code == 404
    missing = client.delete("/v1/auth/keys/999999", headers=bearer(alice["api_key"]))
    assert resp.get_json()["error"]["message"].replace(str(bob["api_key_id"]), "N") == \
        missing.get_json()["error"]["message"].replace("999999", "N")
    assert client.get("/v1/auth/me", headers=bearer(bob["api_key"])).status_code == 200
    alice_keys = client.get("/v1/auth/keys", headers=bearer(alice["api_key"])).get_json()["keys"]
    assert [k["id"] for k in alice_keys] == [alice["api_key_id"]]
    with app.app_context():
        assert ApiKey.get_by_id(bob["api_key_id"]).revoked_at is None



# --- key limits --------------------------------------------------------------------------------


@pytest.mark.parametrize("payload, param", [
    ({"credit_limit": "5"}, "credit_limit"), ({"credit_limit": -1}, "credit_limit"),
    ({"credit_limit": True}, "credit_limit"), ({"credit_limit": 10_000_001}, "credit_limit"),
    ({"expires_at": "next week"}, "expires_at"), ({"expires_at": 1767225600}, "expires_at"),
    ({"expires_at": "2027-13-01T00:00:00Z"}, "expires_at"),
    ({"allowed_models": "fast"}, "allowed_models"), ({"allowed_models": []}, "allowed_models"),
    ({"allowed_models": ["fast", 3]}, "allowed_models"), ({"allowed_models": ["no-such-model"]}, "allowed_models")])
def test_key_limit_fields_are_validated_on_create_and_patch(client, payload, param):
    reg = register(client)
    auth = bearer(reg["session_token"])
    created = client.post("/v1/auth/keys", json={"name": "ci", **payload}, headers=auth)
    assert created.status_code == 400 and error_of(created)["param"] == param, created.get_json()
    assert f"'{param}'" in error_of(created)["message"]
    patched = client.patch(f"/v1/auth/keys/{reg['api_key_id']}", json=payload, headers=auth)
    assert patched.status_code == 400 and error_of(patched)["param"] == param
    assert [k["credit_limit"] for k in client.get("/v1/auth/keys", headers=auth).get_json()["keys"]] == [None]


def test_key_limits_are_set_listed_patched_and_cleared(client):
    reg = register(client)
    auth = bearer(reg["session_token"])
    new = client.post("/v1/auth/keys", headers=auth, json={
        "name": "ci", "credit_limit": 2.5, "expires_at": "2099-01-31T12:00:00+02:00",
        "allowed_models": ["fast", "kimi-k2.5", "fast"]}).get_json()
    assert new["credit_limit"] == 2.5 and new["limit_remaining"] == 2.5
    assert new["expires_at"] == "2099-01-31T10:00:00Z" and new["allowed_models"] == ["fast", "kimi-k2.5"]
    assert new["usage"] == {"spend": 0.0, "requests": 0, "spend_30d": 0.0, "requests_30d": 0}
    url = f"/v1/auth/keys/{new['id']}"
    changed = client.patch(url, json={"credit_limit": 1}, headers=auth).get_json()
    assert changed["credit_limit"] == 1.0 and changed["allowed_models"] == ["fast", "kimi-k2.5"]  # others stay
    cleared = client.patch(url, json={"credit_limit": None, "expires_at": None, "allowed_models": None},
                           headers=auth).get_json()
    assert (cleared["credit_limit"], cleared["expires_at"], cleared["allowed_models"]) == (None, None, None)
    listed = client.get("/v1/auth/keys", headers=auth).get_json()["keys"]
    assert listed[1]["credit_limit"] is None and listed[1]["limit_remaining"] is None
    assert client.patch("/v1/auth/keys/999999", json={}, headers=auth).status_code == 404


def test_another_accounts_key_limits_cannot_be_changed(client):
    alice = register(client, email="alice@example.com")
    bob = register(client, email="bob@example.com")
    resp = client.patch(f"/v1/auth/keys/{bob['api_key_id']}", json={"credit_limit": 0},
                        headers=bearer(alice["api_key"]))
    assert resp.status_code == 404


def test_an_expired_key_is_refused_saying_it_expired(app, client):
    reg = register(client)
    auth = bearer(reg["session_token"])
    past = client.patch(f"/v1/auth/keys/{reg['api_key_id']}", json={"expires_at": "2020-01-01"}, headers=auth)
    assert past.status_code == 200 and past.get_json()["expired"] is True
    resp = client.get("/v1/auth/me", headers=bearer(reg["api_key"]))
    assert resp.status_code == 401 and error_of(resp)["code"] == "expired_api_key"
    assert "expired at 2020-01-01T00:00:00Z" in error_of(resp)["message"]
    with app.app_context():
        later = utcnow() + timedelta(hours=1)
        ApiKey.update(expires_at=later).where(ApiKey.id == reg["api_key_id"]).execute()
        assert accounts.authenticate(reg["api_key"]).api_key_id == reg["api_key_id"]
        with pytest.raises(accounts.AuthenticationFailed, match="expired"):
            accounts.authenticate(reg["api_key"], now=later)


def test_a_key_without_limits_authenticates_with_one_query(app, client):
    reg = register(client)
    with app.app_context():
        from kyma.db import database

        accounts.authenticate(reg["api_key"])  # stamps last use
        seen = []
        real = database.obj.execute_sql
        database.obj.execute_sql = lambda sql, *a, **k: seen.append(sql) or real(sql, *a, **k)
        try:
            principal = accounts.authenticate(reg["api_key"])
        finally:
            database.obj.execute_sql = real
    assert len(seen) == 1 and principal.key_limit_micros is None and principal.key_models is None

def test_secrets_are_stored_only_as_hashes(app, client, tmp_path):
    reg = register(client)
    new = client.post("/v1/auth/keys", json={"name": "two"}, headers=bearer(reg["api_key"])).get_json()
    login = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}).get_json()
    with app.app_context():
        from kyma.db import database

        database.obj.execute_sql("PRAGMA wal_checkpoint(FULL)")
        assert ApiKey.select().where(ApiKey.key_hash == accounts.digest(new["key"])).exists()
    raw = b"".join(p.read_bytes() for p in Path(tmp_path).glob("kyma.db*"))
    for secret in (reg["api_key"], reg["session_token"], new["key"], login["session_token"], PASSWORD):
        assert secret.encode() not in raw
        assert secret[3:20].encode() not in raw  # not even a long fragment


# --- services --------------------------------------------------------------------------------


def test_counter_upsert_is_exact_and_windowed(app):
    with app.app_context():
        store = counters.backend()
        assert store.peek("k", 60, now=1000.0).count == 0
        assert [store.hit("k", 60, now=1000.0 + i).count for i in range(3)] == [1, 2, 3]
        assert store.hit("k", 60, amount=5, now=1010.0).count == 8
        nxt = store.hit("k", 60, now=1021.0)  # window [1020, 1080)
        assert (nxt.count, nxt.resets_at_epoch) == (1, 1080)
        assert counters.peek("k", 60, now=1000.0).count == 8
        assert RateCounter.select().count() == 2


def test_passwords_never_raise_on_long_input():
    hashed = passwords.hash_password("secret1", rounds=4)
    assert passwords.check_password("secret1", hashed)
    assert not passwords.check_password("secret2", hashed)
    assert not passwords.check_password("€" * 25, hashed)
    assert passwords.needs_rehash(hashed, 5) and not passwords.needs_rehash(hashed, 4)


_HITTER = """
import sys
from kyma.db import init_db, database
from kyma.services.counters import DatabaseCounters
init_db(sys.argv[1])
store = DatabaseCounters()
with database.connection_context():
    for _ in range(int(sys.argv[2])):
        store.hit("shared", 3600, now=7200.0)
"""


def test_counter_is_exact_across_processes(app, tmp_path):
    import subprocess
    import sys

    url = app.extensions["kyma"].settings.database_url
    root = Path(__file__).resolve().parent.parent
    procs = [subprocess.Popen([sys.executable, "-c", _HITTER, url, "40"], cwd=root) for _ in range(3)]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    with app.app_context():
        assert counters.peek("shared", 3600, now=7300.0).count == 120


def test_a_negative_proxy_count_is_refused_at_start(tmp_path):
    from kyma.config import Settings

    with pytest.raises(ValueError, match="KYMA_TRUSTED_PROXIES"):
        Settings.from_env({"instance_dir": tmp_path, "secret_key": "s", "trusted_proxies": -1})


def test_a_key_name_sent_with_a_form_content_type_is_kept(client):
    # curl -d sends application/x-www-form-urlencoded; the JSON body must still be read.
    body = register(client)
    auth = {"Authorization": f"Bearer {body['api_key']}", "Content-Type": "application/x-www-form-urlencoded"}
    created = client.post("/v1/auth/keys", data='{"name": "from-curl"}', headers=auth)
    assert created.status_code == 201 and created.get_json()["name"] == "from-curl"


@pytest.mark.parametrize("proxies, hsts", [(0, False), (1, True), (2, True)])
def test_the_scheme_comes_from_the_nearest_trusted_proxy(make_app, proxies, hsts):
    # Proxies replace X-Forwarded-Proto rather than append to it: one value, however many there are.
    app = make_app(trusted_proxies=proxies)
    page = app.test_client().get("/login", headers={"X-Forwarded-Proto": "https",
                                                    "X-Forwarded-For": "203.0.113.1, 10.0.0.3"})
    assert ("Strict-Transport-Security" in page.headers) is hsts


@pytest.mark.parametrize("given, network", [("1.2.3.4:5678", "1.2.3.4"), ("[2001:db8::1]:443", "2001:db8::/64"),
                                            ("fe80::1%eth0", "fe80::/64"), ("not an address", "unknown"),
                                            ("", "unknown"), ("127.8.9.10", "loopback")])
def test_the_network_a_signup_counts_against(given, network):
    assert accounts.signup_network(given) == network


def test_a_sliding_window_longer_than_the_pruning_keeps_is_refused(sqlite_db):
    with pytest.raises(ValueError):
        counters.backend().total("k", 300, counters.LONGEST_WINDOW_SECONDS + 1)
