"""The admin console through the Flask test client: the 404 guard, accounts, routes, traffic, audit."""

from __future__ import annotations

import json
import re

import pytest

from kyma.models import Account, AuditEntry, LedgerEntry
from kyma.services import admins
from kyma.services.breaker import DISABLED, HELD_OPEN, CircuitBreaker, DatabaseBreakerStore
from tests.conftest import register
from tests.test_web import HX, browser, csrf_of, log_request, sign_up

ADMIN = "ops@example.com"


def make_admin(app, email=ADMIN):
    with app.app_context():
        admins.set_admin(email, True, actor="test")


@pytest.fixture()
def admin(app):
    c = browser(app)
    sign_up(c, ADMIN)
    make_admin(app)
    return c


def customer(app, email="cust@example.com") -> tuple[int, str]:
    """A customer registered over the API: (account id, API key)."""
    reg = register(app.test_client(), email, "secret-pw")
    return int(reg["user_id"]), reg["api_key"]


def audit_actions(app) -> list[str]:
    with app.app_context():
        return [e.action for e in AuditEntry.select().order_by(AuditEntry.id)]


def admin_urls(app) -> list[str]:
    """Every /admin rule with its converters filled in, plus an unknown one."""
    urls = [re.sub(r"<[^>]+>", "1", r.rule) for r in app.url_map.iter_rules() if r.rule.startswith("/admin")]
    assert len(urls) >= 10
    return urls + ["/admin/no-such-page", "/admin/accounts/1/delete"]


@pytest.mark.parametrize("who", ["signed out", "customer"])
def test_every_admin_url_and_method_is_a_404_to_non_admins(app, who):
    c = browser(app)
    if who == "customer":
        sign_up(c, "cust@example.com")
    token = csrf_of(c)
    customer(app, "victim@example.com")
    for url in admin_urls(app):
        for method in ("GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS"):
            resp = c.open(url, method=method, data={"csrf_token": token, "usd": "5", "idempotency_key": "k",
                                                      "route": "sim-alpha/x", "action": "open"})
            assert resp.status_code == 404, (who, method, url, resp.status_code)
    assert audit_actions(app) == [] and LedgerEntry.select().where(LedgerEntry.kind == "grant").count() == 0


def test_a_refused_console_page_looks_exactly_like_a_missing_one(app):
    c = browser(app)
    sign_up(c, "cust@example.com")

    def seen(url):
        resp = c.get(url)
        # Date and the refreshed session cookie carry the second they were made: only their names count.
        headers = sorted((k, "" if k == "Set-Cookie" else v) for k, v in resp.headers if k != "Date")
        return resp.status_code, resp.get_data(as_text=True), headers

    assert seen("/admin/accounts") == seen("/admin/no-such-page") == seen("/admin/audit")
    assert seen("/admin/accounts")[0] == 404


def test_admin_pages_render_for_an_admin(app, admin):
    cid, _ = customer(app)
    with app.app_context():
        log_request(cid, status=502, error="upstream_error: boom", provider="sim-beta", fallback_layer=1)
    for url in ("/admin/accounts", f"/admin/accounts/{cid}", "/admin/traffic", "/admin/routes", "/admin/audit"):
        resp = admin.get(url)
        assert resp.status_code == 200, url
        assert resp.headers["Content-Security-Policy"] and "Accounts" in resp.get_data(as_text=True)
    assert admin.get("/admin").status_code == 303
    assert 'href="/admin"' in admin.get("/dashboard").get_data(as_text=True)  # the nav shows admins the console


def test_admin_posts_need_the_csrf_token(app, admin):
    cid, _ = customer(app)
    resp = admin.post(f"/admin/accounts/{cid}/suspend", data={"csrf_token": "forged"})
    assert resp.status_code == 403
    with app.app_context():
        assert Account.get_by_id(cid).suspended_at is None


def test_grant_is_idempotent_and_audited(app, admin):
    cid, _ = customer(app)
    token = csrf_of(admin)
    form = {"csrf_token": token, "usd": "5", "idempotency_key": "form-1", "note": "goodwill"}
    first = admin.post(f"/admin/accounts/{cid}/credit", data=form, headers=HX | {"HX-Target": "account"})
    again = admin.post(f"/admin/accounts/{cid}/credit", data=form, headers=HX | {"HX-Target": "account"})
    assert first.status_code == again.status_code == 200
    assert "Credit granted." in first.get_data(as_text=True)
    assert "Already granted" in again.get_data(as_text=True)
    with app.app_context():
        assert Account.get_by_id(cid).balance_micros == 5_500_000  # the $0.50 signup credit and $5 once
        grants = list(LedgerEntry.select().where((LedgerEntry.account == cid) & (LedgerEntry.kind == "grant")))
        assert [g.amount_micros for g in grants] == [5_000_000]
        from kyma.services.ledger import check_ledger
        assert check_ledger() == []
        entry = AuditEntry.get(AuditEntry.action == "credit.grant")
        assert entry.actor == ADMIN and entry.target == "cust@example.com"
        assert json.loads(entry.before) == {"balance_micros": 500_000}
        assert json.loads(entry.after)["balance_micros"] == 5_500_000
    bad = admin.post(f"/admin/accounts/{cid}/credit", data={**form, "usd": "-3", "idempotency_key": "form-2"})
    assert bad.status_code == 400 and audit_actions(app) == ["admin.grant", "credit.grant"]


def test_tier_override_up_and_down(app, admin):
    cid, _ = customer(app)
    token = csrf_of(admin)
    assert admin.post(f"/admin/accounts/{cid}/tier", data={"csrf_token": token, "tier": "3"}).status_code == 200
    with app.app_context():
        assert Account.get_by_id(cid).tier == 3
    admin.post(f"/admin/accounts/{cid}/tier", data={"csrf_token": token, "tier": "1"})
    with app.app_context():
        assert Account.get_by_id(cid).tier == 1
    assert admin.post(f"/admin/accounts/{cid}/tier", data={"csrf_token": token, "tier": "99"}).status_code == 400
    with app.app_context():
        tiers = [(json.loads(e.before), json.loads(e.after)) for e in AuditEntry.select()
                 .where(AuditEntry.action == "account.tier").order_by(AuditEntry.id)]
    assert tiers == [({"tier": 0}, {"tier": 3}), ({"tier": 3}, {"tier": 1})]


def test_suspension_refuses_keys_in_each_protocol_and_sign_in_then_reinstates(app, admin):
    cid, key = customer(app)
    c = browser(app)
    sign_up(c, "member@example.com")
    token = csrf_of(admin)
    assert admin.post(f"/admin/accounts/{cid}/suspend", data={"csrf_token": token, "reason": "abuse"}).status_code == 200
    api = app.test_client()
    chat = api.post("/v1/chat/completions", json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"Authorization": f"Bearer {key}"})
    assert chat.status_code == 403
    assert chat.get_json()["error"]["code"] == "account_suspended" and "suspended" in chat.get_json()["error"]["message"]
    messages = api.post("/v1/messages", json={"model": "fast", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
                        headers={"x-api-key": key, "anthropic-version": "2023-06-01"})
    assert messages.status_code == 403
    assert messages.get_json()["type"] == "error" and messages.get_json()["error"]["type"] == "permission_error"
    login = browser(app)
    page = login.post("/login", data={"email": "cust@example.com", "password": "secret-pw", "csrf_token": csrf_of(login)})
    assert page.status_code == 403 and "suspended" in page.get_data(as_text=True)
    with app.app_context():
        assert Account.get_by_id(cid).balance_micros == 500_000  # nothing of it is gone
    admin.post(f"/admin/accounts/{cid}/reinstate", data={"csrf_token": token})
    assert api.get("/v1/auth/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert audit_actions(app)[-2:] == ["account.suspend", "account.reinstate"]


def test_a_suspended_session_is_signed_out(app, admin):
    c = browser(app)
    sign_up(c, "member@example.com")
    with app.app_context():
        mid = Account.get(Account.email == "member@example.com").id
    admin.post(f"/admin/accounts/{mid}/suspend", data={"csrf_token": csrf_of(admin)})
    resp = c.get("/dashboard")
    assert resp.status_code == 303 and "/login" in resp.headers["Location"]


def test_account_search_and_detail(app, admin):
    cid, _ = customer(app, "findme@example.com")
    customer(app, "other@example.com")
    with app.app_context():
        log_request(cid, cost_micros=1234)
    found = admin.get("/admin/accounts?q=FINDme").get_data(as_text=True)
    assert "findme@example.com" in found and "other@example.com" not in found
    page = admin.get(f"/admin/accounts/{cid}?range=7d").get_data(as_text=True)
    assert "$0.001234" in page and "default" in page  # spend over the period, its first key


def test_manual_circuit_and_disabled_route_in_the_database_store(app):
    with app.app_context():
        _manual_flags(CircuitBreaker(DatabaseBreakerStore(), failures=1, cooldown=0.01, max_cooldown=0.01))


def test_manual_circuit_in_the_redis_store():
    from kyma.services.breaker import RedisBreakerStore
    from tests.backends import REDIS_URL, redis_prefix

    with redis_prefix() as prefix:
        store = RedisBreakerStore(REDIS_URL, prefix=prefix)
        _manual_flags(CircuitBreaker(store, failures=1, cooldown=0.01, max_cooldown=0.01))
        store.set_manual("p/m", HELD_OPEN)
        store.failure("p/m", 1.0, 1, (0.01, 0.01), None)
        assert store.redis.ttl(prefix + "p/m") == -1, "a hand-set flag never expires"


def _manual_flags(breaker: CircuitBreaker):
    route = "p/m"
    breaker.set_manual(route, HELD_OPEN)
    assert breaker.state(route).manual == HELD_OPEN
    for t in (0.0, 100.0, 10_000.0):  # long past any cooldown: no half-open probe
        assert not breaker.check(route, now=t).allowed
    breaker.record_failure(route, now=1.0)
    breaker.record_success(route, breaker.check(route, now=2.0))  # a late success of an attempt in flight
    assert not breaker.check(route, now=3.0).allowed and breaker.state(route).manual == HELD_OPEN
    breaker.set_manual(route, "")
    assert breaker.check(route).allowed and breaker.state(route).failures == 0
    breaker.set_manual(route, DISABLED)
    assert not breaker.check(route, now=10_000.0).allowed
    breaker.set_manual(route, "")
    assert breaker.check(route).allowed


def test_route_switches_are_audited_and_refuse_unknown_routes(app, admin):
    token = csrf_of(admin)
    with app.app_context():
        from kyma.runtime import runtime
        route = runtime().routes.routes_for(runtime().catalog.models[0].id)[0].key
    resp = admin.post("/admin/routes/switch", data={"csrf_token": token, "route": route, "action": "open"})
    assert resp.status_code == 200 and 'data-circuit="held open"' in resp.get_data(as_text=True)
    admin.post("/admin/routes/switch", data={"csrf_token": token, "route": route, "action": "disable"})
    assert 'data-circuit="disabled"' in admin.get("/admin/routes").get_data(as_text=True)
    admin.post("/admin/routes/switch", data={"csrf_token": token, "route": route, "action": "enable"})
    assert admin.post("/admin/routes/switch", data={"csrf_token": token, "route": "evil/x", "action": "open"}).status_code == 400
    assert audit_actions(app)[-3:] == ["route.open", "route.disable", "route.enable"]
    with app.app_context():
        entry = AuditEntry.get(AuditEntry.action == "route.open")
        assert entry.target == route and json.loads(entry.after)["manual"] == "open"


def test_traffic_filters_and_summaries(app, admin):
    a, _ = customer(app, "a@example.com")
    b, _ = customer(app, "b@example.com")
    with app.app_context():
        log_request(a, request_id="req-a-ok", upstream_cost_micros=40, cost_micros=50)
        log_request(b, request_id="req-b-fail", status=503, error="overloaded", provider="sim-beta",
                    model_served=None, fallback_layer=2, latency_ms=900.0, error_code="upstream_error")
    every = admin.get("/admin/traffic").get_data(as_text=True)
    assert "req-a-ok" in every and "req-b-fail" in every
    assert f'href="/admin/accounts/{b}">b@example.com</a>' in every  # each request names its account
    for query, shown, hidden in (("account=b@", "req-b-fail", "req-a-ok"), ("status=5xx", "req-b-fail", "req-a-ok"),
                                 ("status=200", "req-a-ok", "req-b-fail"), ("provider=sim-alpha", "req-a-ok", "req-b-fail"),
                                 ("layer=2", "req-b-fail", "req-a-ok"), ("error=overload", "req-b-fail", "req-a-ok"),
                                 ("q=req-a", "req-a-ok", "req-b-fail"), (f"account={a}", "req-a-ok", "req-b-fail"),
                                 ("code=upstream_error", "req-b-fail", "req-a-ok")):
        page = admin.get(f"/admin/traffic?{query}", headers=HX | {"HX-Target": "traffic-results"}).get_data(as_text=True)
        assert shown in page and hidden not in page, query
    exact = admin.get("/admin/traffic?code=upstream", headers=HX | {"HX-Target": "traffic-results"})
    assert "req-b-fail" not in exact.get_data(as_text=True)  # the code is matched whole
    assert '<option value="upstream_error">' in every  # the codes logged are offered
    assert 'href="/admin/traffic?code=upstream_error"' in every  # a row's code filters by it
    pushed = admin.get("/admin/traffic?code=upstream_error&status=5xx", headers=HX | {"HX-Target": "traffic-results"})
    assert pushed.headers["HX-Push-Url"] == "/admin/traffic?status=5xx&code=upstream_error"
    beta = every[every.index('data-name="sim-beta"'):]
    assert "100.0%" in beta[:beta.index("</tr>")]  # its one request failed
    assert "$0.000040" in every  # upstream cost beside what was charged


def test_audit_log_is_newest_first_and_paged(app, admin):
    from kyma.services import audit

    with app.app_context():
        for i in range(30):
            audit.record("x@example.com", "test.action", f"t{i}")
    first = admin.get("/admin/audit").get_data(as_text=True)
    assert first.index(">t29<") < first.index(">t28<") and ">t3<" not in first
    assert ">t3<" in admin.get("/admin/audit?page=2").get_data(as_text=True)
    with app.app_context():
        audit.record("x@example.com", "other.action", "elsewhere")
        second = audit.page(2, size=20, action="test.action")  # the shared page type, its filter kept
    assert (second.page, second.has_previous, second.has_next, second.filter.action) == (2, True, False,
                                                                                        "test.action")
    assert [e.target for e in second.rows] == [f"t{i}" for i in range(9, -1, -1)]


def test_cli_grant_revoke_and_admin_emails_setting(app, monkeypatch):
    from kyma.cli import apply_configured_admins

    customer(app, "boss@example.com")
    runner = app.test_cli_runner()
    assert "now an admin" in runner.invoke(args=["admin", "grant", "boss@example.com"]).output
    assert "already an admin" in runner.invoke(args=["admin", "grant", "BOSS@example.com"]).output
    assert "now not an admin" in runner.invoke(args=["admin", "revoke", "boss@example.com"]).output
    assert runner.invoke(args=["admin", "grant", "nobody@example.com"]).exit_code == 1
    app.extensions["kyma"].settings = app.extensions["kyma"].settings.__class__(
        **{**app.extensions["kyma"].settings.__dict__, "admin_emails": ("boss@example.com", "later@example.com")})
    assert apply_configured_admins(app) == ["boss@example.com"]
    assert apply_configured_admins(app) == []  # idempotent
    with app.app_context():
        assert Account.get(Account.email == "boss@example.com").is_admin
    assert audit_actions(app) == ["admin.grant", "admin.revoke", "admin.grant"]


def test_admin_emails_are_applied_when_the_app_starts(app, make_app):
    customer(app, "boss@example.com")
    again = make_app(admin_emails=("boss@example.com",))
    with again.app_context():
        assert Account.get(Account.email == "boss@example.com").is_admin
        assert [(e.actor, e.action) for e in AuditEntry.select()] == [("KYMA_ADMIN_EMAILS", "admin.grant")]


def test_a_redis_that_refuses_a_switch_says_so(app, admin):
    from kyma.runtime import runtime
    from kyma.services.breaker import RedisBreakerStore

    with app.app_context():
        rt = runtime()
        route = rt.routes.routes_for(rt.catalog.models[0].id)[0].key
        store = RedisBreakerStore("redis://127.0.0.1:1/0", timeout=0.2)  # nothing listens there
        original, rt.breaker = rt.breaker, CircuitBreaker(store)
    try:
        resp = admin.post("/admin/routes/switch", data={"csrf_token": csrf_of(admin), "route": route, "action": "open"})
        assert resp.status_code == 503 and "nothing changed" in resp.get_data(as_text=True)
        assert not [a for a in audit_actions(app) if a.startswith("route.")]
    finally:
        rt.breaker = original
