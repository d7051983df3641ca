"""Web pages through the Flask test client: CSRF, ownership, fragments vs pages, dashboard data."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta

import pytest

from kyma.models import ApiKey, RequestLog, RouteOutcome, utcnow

HX = {"HX-Request": "true"}
ORIGIN = "http://localhost"  # the Flask test client's host


def browser(app, origin: str = ORIGIN):
    """A test client that, like a browser, sends Origin on every request."""
    c = app.test_client()
    c.environ_base["HTTP_ORIGIN"] = origin
    return c


@pytest.fixture()
def client(app):
    return browser(app)


def csrf_of(client) -> str:
    """The CSRF token the pages embed for this browser session."""
    html = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_up(client, email="web@example.com", password="secret-pw"):
    resp = client.post("/signup", data={"email": email, "password": password, "csrf_token": csrf_of(client)})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp


def account_id(email: str) -> int:
    from kyma.models import Account

    return Account.get(Account.email == email).id


def log_request(account: int, **fields) -> RequestLog:
    values = dict(request_id=f"req-{utcnow().timestamp()}-{fields.get('status', 200)}-{fields.get('model_served')}",
                  account=account, endpoint="/v1/chat/completions", model_requested="fast",
                  model_served="llama-3.3-70b", provider="sim-alpha", status=200, prompt_tokens=12,
                  completion_tokens=30, cost_micros=50, latency_ms=120.0, ttft_ms=40.0)
    values.update(fields)
    return RequestLog.create(**values)


@pytest.mark.parametrize("path", ["/", "/models", "/status", "/signup", "/login"])
def test_public_pages_render_with_security_headers(client, path):
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Referrer-Policy"] == "same-origin"


def test_landing_has_sdk_snippets_and_openapi_link(client):
    html = client.get("/", base_url="http://gw.example:8080").get_data(as_text=True)
    assert 'base_url="http://gw.example:8080/v1"' in html  # openai: with /v1
    assert 'base_url="http://gw.example:8080"' in html  # anthropic: the origin
    assert "ANTHROPIC_BASE_URL=http://gw.example:8080" in html
    assert 'href="/v1/openapi.json"' in html


@pytest.mark.parametrize("path", ["/dashboard", "/playground", "/dashboard/requests"])
def test_signed_out_visitors_are_sent_to_login(client, path):
    resp = client.get(path)
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("/login?next=")


def test_form_post_without_csrf_token_is_refused(client):
    resp = client.post("/signup", data={"email": "x@example.com", "password": "secret-pw"})
    assert resp.status_code == 403
    resp = client.post("/signup", data={"email": "x@example.com", "password": "secret-pw", "csrf_token": "forged"})
    assert resp.status_code == 403
    from kyma.models import Account

    assert not Account.select().where(Account.email == "x@example.com").exists()


def test_htmx_post_needs_the_csrf_header(client):
    sign_up(client)
    assert client.post("/dashboard/keys", data={"name": "ci"}, headers=HX).status_code == 403
    ok = client.post("/dashboard/keys", data={"name": "ci"}, headers={**HX, "X-CSRF-Token": csrf_of(client)})
    assert ok.status_code == 201


def test_signup_shows_key_once_and_dashboard_shows_signup_credit(client):
    html = sign_up(client).get_data(as_text=True)
    assert re.search(r'id="first-key"[^>]*>ky-[A-Za-z0-9_-]{20,}<', html)
    dash = client.get("/dashboard").get_data(as_text=True)
    assert 'id="balance">$0.50<' in dash
    assert "ky-" in dash and not re.search(r"ky-[A-Za-z0-9_-]{30,}", dash)  # keys listed masked only


def test_session_cookie_is_httponly_and_lax(client):
    resp = sign_up(client)
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_session_cookie_is_secure_over_https(client):
    client.get("/login", base_url="https://gw.example")
    resp = client.get("/login", base_url="https://gw.example")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', resp.get_data(as_text=True)).group(1)
    resp = client.post("/signup", base_url="https://gw.example", headers={"Origin": "https://gw.example"},
                       data={"email": "s@example.com", "password": "secret-pw", "csrf_token": csrf})
    assert resp.status_code == 201
    assert "Secure" in resp.headers["Set-Cookie"]


def test_login_failure_rerenders_form_and_success_redirects(client):
    sign_up(client, "li@example.com")
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    assert client.get("/dashboard").status_code == 303
    bad = client.post("/login", data={"email": "li@example.com", "password": "wrong-pw", "csrf_token": csrf_of(client)})
    assert bad.status_code == 401 and "Invalid email or password" in bad.get_data(as_text=True)
    good = client.post("/login", data={"email": "li@example.com", "password": "secret-pw",
                                       "next": "//evil.example/", "csrf_token": csrf_of(client)})
    assert good.status_code == 303 and good.headers["Location"] == "/dashboard"  # no open redirect
    assert client.get("/dashboard").status_code == 200


def test_logout_ends_the_server_session(app, client):
    sign_up(client)
    with client.session_transaction() as s:
        token = s["kst"]
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    from kyma.errors import AuthenticationFailed
    from kyma.services import accounts

    with app.app_context(), pytest.raises(AuthenticationFailed):
        accounts.authenticate(token)


def test_create_and_revoke_key_as_htmx_fragments(client):
    sign_up(client)
    created = client.post("/dashboard/keys", data={"name": "laptop"}, headers={**HX, "X-CSRF-Token": csrf_of(client)})
    html = created.get_data(as_text=True)
    assert created.status_code == 201 and "<html" not in html
    assert re.search(r'id="new-key" class="secret" readonly rows="2" spellcheck="false">ky-', html)
    key = ApiKey.get(ApiKey.name == "laptop")
    revoked = client.post(f"/dashboard/keys/{key.id}/revoke", headers={**HX, "X-CSRF-Token": csrf_of(client)})
    assert revoked.status_code == 200 and "<html" not in revoked.get_data(as_text=True)
    assert ApiKey.get_by_id(key.id).revoked_at is not None
    assert 'id="new-key"' not in revoked.get_data(as_text=True)  # the full key is never shown again


@pytest.mark.parametrize("name", ["", "   "])
def test_a_blank_key_name_is_refused_in_the_form(client, name):
    sign_up(client, "blank@example.com")
    before = ApiKey.select().count()
    headers = {"X-CSRF-Token": csrf_of(client)}
    for resp in (client.post("/dashboard/keys", data={"name": name}, headers={**HX, **headers}),
                 client.post("/dashboard/keys", data={"name": name}, headers=headers)):  # no JavaScript
        html = resp.get_data(as_text=True)
        assert resp.status_code == 400
        assert re.search(r'id="key-name-error">Give the key a name', html)
        assert 'aria-invalid="true" aria-describedby="key-name-error"' in html
    assert ApiKey.select().count() == before  # no key named "default" was made instead


def test_another_accounts_key_cannot_be_revoked(app):
    alice, mallory = browser(app), browser(app)
    sign_up(alice, "alice@example.com")
    sign_up(mallory, "mallory@example.com")
    alice_key = ApiKey.get(ApiKey.account == account_id("alice@example.com"))
    resp = mallory.post(f"/dashboard/keys/{alice_key.id}/revoke", headers={**HX, "X-CSRF-Token": csrf_of(mallory)})
    assert resp.status_code == 404
    assert resp.headers["HX-Retarget"] == "#flash" and 'role="alert"' in resp.get_data(as_text=True)
    assert ApiKey.get_by_id(alice_key.id).revoked_at is None


def test_models_page_or_fragment_from_the_same_url(client):
    page = client.get("/models?cost_tier=cheap")
    fragment = client.get("/models?cost_tier=cheap", headers=HX)
    assert "<html" in page.get_data(as_text=True)
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and "HX-Request" in fragment.headers["Vary"]
    shown = set(re.findall(r'data-model="([^"]+)"', body))
    assert shown == {"glm-4.7-flash", "gemma-4-31b", "gpt-oss-120b", "glm-4.5-air"}
    restore = client.get("/models", headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in restore.get_data(as_text=True)


def test_models_filters_combine_and_ignore_bad_numbers(client):
    body = client.get("/models?tools=false&min_context_window=abc", headers=HX).get_data(as_text=True)
    assert set(re.findall(r'data-model="([^"]+)"', body)) == {"deepseek-r1"}
    body = client.get("/models?vision=true&max_input_price=0.3", headers=HX).get_data(as_text=True)
    assert set(re.findall(r'data-model="([^"]+)"', body)) == {"gemma-4-31b"}


def test_request_log_filters_pages_and_detail(client):
    sign_up(client, "log@example.com")
    me = account_id("log@example.com")
    log_request(me, model_served="deepseek-v3", status=200, simulated=True, fallback_layer=2)
    log_request(me, model_served="glm-5.1", status=502, cost_micros=0, error="all routes failed")
    for i in range(22):
        log_request(me, request_id=f"bulk-{i}", model_served="qwen-3-32b")
    page1 = client.get("/dashboard/requests", headers=HX).get_data(as_text=True)
    assert page1.count('id="req-') == 20 and 'rel="next"' in page1
    page2 = client.get("/dashboard/requests?page=2", headers=HX).get_data(as_text=True)
    assert page2.count('id="req-') == 4 and 'rel="prev"' in page2
    failed = client.get("/dashboard/requests?status=error", headers=HX).get_data(as_text=True)
    assert failed.count('id="req-') == 1 and "glm-5.1" in failed
    by_model = client.get("/dashboard/requests?model=deepseek-v3", headers=HX).get_data(as_text=True)
    assert by_model.count('id="req-') == 1 and "simulated" in by_model
    row = RequestLog.get(RequestLog.model_served == "deepseek-v3")
    detail = client.get(f"/dashboard/requests/{row.id}", headers=HX).get_data(as_text=True)
    assert "layer 2" in detail and "simulated provider" in detail and "40 ms" in detail


def test_request_detail_lists_the_upstream_attempts_and_the_note(client):
    from kyma.models import RouteOutcome

    sign_up(client, "attempts@example.com")
    row = log_request(account_id("attempts@example.com"), request_id="req-attempts", model_served="qwen-3-32b",
                      note="continued by sim-beta after the stream broke on sim-alpha")
    for i, (provider, role, ok, status) in enumerate((("sim-alpha", "", False, 500), ("sim-alpha", "retry", True, 200))):
        RouteOutcome.create(request_id="req-attempts", model="qwen-3-32b", provider=provider, role=role, ok=ok,
                            status=status, error=None if ok else "upstream answered HTTP 500", latency_ms=12 + i)
    detail = client.get(f"/dashboard/requests/{row.id}", headers=HX).get_data(as_text=True)
    assert "Upstream attempts" in detail and detail.count("<tr><td>") == 2
    assert "first try" in detail and "failed (500): upstream answered HTTP 500" in detail
    assert "retry" in detail and "served" in detail and "continued by sim-beta" in detail


def test_request_detail_page_has_a_heading_and_the_fragment_a_close_button(client):
    sign_up(client, "h1@example.com")
    row = log_request(account_id("h1@example.com"), request_id="req-heading")
    page = client.get(f"/dashboard/requests/{row.id}").get_data(as_text=True)
    assert re.findall(r"<h1[^>]*>(.*?)</h1>", page, re.S) == ["Request <code>req-heading</code>"]
    assert "data-close-detail" not in page  # its own page closes by going back
    fragment = client.get(f"/dashboard/requests/{row.id}", headers=HX).get_data(as_text=True)
    assert "<h1" not in fragment and "<h3" in fragment and "data-close-detail" in fragment
    assert f'data-row="req-{row.id}"' in fragment and 'tabindex="-1"' in fragment  # detail.js focuses it


@pytest.mark.parametrize("path,current", [("/", "Kyma"), ("/models", "Models"), ("/status", "Status"),
                                          ("/login", "Log in"), ("/dashboard", "Dashboard"),
                                          ("/dashboard/requests", "Dashboard"), ("/playground", "Playground")])
def test_nav_marks_the_current_section(client, path, current):
    if path not in ("/", "/models", "/status", "/login"):
        sign_up(client, "nav@example.com")
    html = client.get(path).get_data(as_text=True)
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', html, re.S).group(1)
    assert re.findall(r'<a [^>]*aria-current="page"[^>]*>([^<]*)</a>', nav) == [current]


def test_times_are_marked_up_in_utc_for_the_browser_to_localize(client):
    sign_up(client, "tz@example.com")
    row = log_request(account_id("tz@example.com"), created_at=datetime(2026, 3, 4, 5, 6, 7))
    log = client.get("/dashboard/requests").get_data(as_text=True)
    assert '<time datetime="2026-03-04T05:06:07Z" data-local="short">03-04 05:06:07 UTC</time>' in log
    detail = client.get(f"/dashboard/requests/{row.id}").get_data(as_text=True)
    assert '<time datetime="2026-03-04T05:06:07Z" data-local="seconds">2026-03-04 05:06:07 UTC</time>' in detail
    assert "localtime.js" in detail and "(UTC)" not in log + detail  # the zone is named beside each time


def test_request_detail_of_another_account_is_not_found(app):
    owner, other = browser(app), browser(app)
    sign_up(owner, "owner@example.com")
    sign_up(other, "other@example.com")
    row = log_request(account_id("owner@example.com"))
    assert owner.get(f"/dashboard/requests/{row.id}").status_code == 200
    assert other.get(f"/dashboard/requests/{row.id}").status_code == 404


def test_spend_fragment_reflects_logged_costs(client):
    sign_up(client, "spend@example.com")
    me = account_id("spend@example.com")
    log_request(me, model_served="kimi-k2.5", cost_micros=1_250_000)
    log_request(me, model_served="kimi-k2.5", cost_micros=250_000, created_at=utcnow() - timedelta(days=3))
    log_request(me, model_served="glm-4.5-air", cost_micros=10)
    log_request(me, model_served="glm-4.5-air", cost_micros=999_000, created_at=utcnow() - timedelta(days=40))
    body = client.get("/dashboard/spend", headers=HX).get_data(as_text=True)
    assert "<html" not in body
    assert 'id="spent-30d">$1.500010<' in body  # the 40-day-old request is outside the window
    assert "kimi-k2.5: $1.500000 · 2 req" in body and "glm-4.5-air: $0.000010 · 1 req" in body


def test_spend_per_model_leaves_out_what_cost_nothing(client):
    sign_up(client, "zero@example.com")
    me = account_id("zero@example.com")
    log_request(me, model_served=None, model_requested="no-such-model", status=404, cost_micros=0)
    log_request(me, model_served="glm-5.1", status=502, cost_micros=0)
    assert "No spend yet." in client.get("/dashboard/spend", headers=HX).get_data(as_text=True)
    log_request(me, model_served="kimi-k2.5", cost_micros=43)
    body = client.get("/dashboard/spend", headers=HX).get_data(as_text=True)
    chart = re.search(r'<svg[^>]*id="model-chart">(.*?)</svg>', body, re.S).group(1)
    assert re.findall(r"<title>([^<]*)</title>", chart) == ["kimi-k2.5: $0.000043 · 1 req"]


def tier_card(client) -> str:
    html = client.get("/dashboard/spend", headers=HX).get_data(as_text=True)
    return " ".join(re.search(r'<span class="label">Tier</span>(.*?)</div>', html, re.S).group(1).split())


def test_tier_says_what_it_allows_and_how_to_reach_the_next(client):
    from kyma.services import ledger

    sign_up(client, "tier@example.com")
    card = tier_card(client)
    assert "Tier 0 (free)" in card  # the ladder's own name, not a bare 0
    assert "30 requests a minute (25 to one model), 200,000 tokens a minute, 200,000 tokens in one request" in card
    assert "Tier 1 once you have bought $5.00 of credit in all (you have bought $0.00; sign-up credit and grants" \
        in card and "60 requests a minute, 500,000 tokens a minute" in card
    ledger.add_credit("tier@example.com", 5, kind="grant")
    assert "you have bought $0.00" in tier_card(client)  # a grant does not count
    ledger.add_credit("tier@example.com", 1000)
    card = tier_card(client)
    assert "Tier 4" in card and "300 requests a minute" in card and "The highest tier ($1,000.00 bought)" in card


def test_spend_per_day_is_zero_filled_and_bucketed(app):
    from kyma.services import dashboard as board

    from kyma.models import Account

    acct = Account.create(email="d@example.com", password_hash="x")
    today = utcnow().date()
    noon = datetime.combine(today, datetime.min.time()) + timedelta(hours=12)
    log_request(acct.id, request_id="a", cost_micros=100, created_at=noon)
    log_request(acct.id, request_id="b", cost_micros=200, created_at=noon + timedelta(minutes=5))
    log_request(acct.id, request_id="c", cost_micros=7, created_at=noon - timedelta(days=2))
    days = board.spend_per_day(acct.id, days=30, today=today)
    assert len(days) == 30 and days[-1].day == today
    assert (days[-1].cost_micros, days[-1].requests) == (300, 2)
    assert days[-3].cost_micros == 7 and sum(d.cost_micros for d in days) == 307


def test_status_page_uptime_from_route_outcomes(client):
    now = utcnow()
    for ok in (True, True, True, False):
        RouteOutcome.create(model="deepseek-v3", provider="sim-alpha", ok=ok, created_at=now - timedelta(minutes=2))
    body = client.get("/status", headers=HX).get_data(as_text=True)
    row = re.search(r'<tr data-model="deepseek-v3">(.*?)</tr>', body, re.S).group(1)
    assert "75.00%" in row and "outage" not in row
    untouched = re.search(r'<tr data-model="glm-5.1">(.*?)</tr>', body, re.S).group(1)
    assert "no data" in untouched  # never invented


def test_charts_scale_to_the_largest_value():
    from datetime import date

    from kyma.services.dashboard import DaySpend, ModelSpend
    from kyma.web import charts

    chart = charts.daily_spend_chart([DaySpend(date(2026, 1, 1), 0, 0), DaySpend(date(2026, 1, 2), 50, 1),
                                      DaySpend(date(2026, 1, 3), 100, 2)], width=300, height=110)
    assert [b.height for b in chart.bars] == [0, 50, 100]
    assert chart.bars[2].y == 10 and not chart.empty
    bars = charts.model_spend_chart([ModelSpend("a", 400, 1, 10), ModelSpend("b", 100, 1, 10)], width=430).bars
    assert bars[0].width == 200 and bars[1].width == 50
    assert charts.model_spend_chart([]).empty


def test_money_rule_costs_to_the_micro_dollar_money_held_to_the_cent():
    from kyma.web.money import usd, usd_price

    assert [usd(m) for m in (499_058, 120, 43, 0, 12_500_000, -20_000)] == \
        ["$0.499058", "$0.000120", "$0.000043", "$0.000000", "$12.500000", "-$0.020000"]
    assert [usd(m, cents=True) for m in (499_058, 500_000, 1_204_000_000, 43, 0, -20_000)] == \
        ["$0.50", "$0.50", "$1,204.00", "<$0.01", "$0.00", "-$0.02"]
    assert [usd_price(p) for p in (0.41, 2.9, 0.075, 100)] == ["$0.41", "$2.90", "$0.075", "$100.00"]


def test_dashboard_writes_costs_one_way_and_money_held_another(client):
    sign_up(client, "money@example.com")
    me = account_id("money@example.com")
    for cost in (499_058, 120, 43, 0):
        log_request(me, cost_micros=cost)
    html = client.get("/dashboard").get_data(as_text=True)
    costs = re.findall(r'data-label="Cost">([^<]*)<', html)
    assert sorted(costs) == ["$0.000000", "$0.000043", "$0.000120", "$0.499058"]  # six decimals: a column lines up
    assert 'id="balance">$0.50<' in html  # the signup credit, to the cent
    assert 'id="spent-30d">$0.499221<' in html
    assert re.search(r'<td>signup</td>\s*<td class="num">\$0\.50</td>', html)  # credit history, to the cent


def test_model_prices_keep_their_decimals(client, monkeypatch):
    from kyma.web import pages

    def one_cheap_model(catalog, query):
        model = catalog.models[0]
        return [dataclasses.replace(model, pricing=dataclasses.replace(model.pricing, input_per_1m=0.075))]

    monkeypatch.setattr(pages, "filter_models", one_cheap_model)
    html = client.get("/models").get_data(as_text=True)
    assert 'data-label="Input $/1M">$0.075<' in html  # not rounded to $0.08


@pytest.mark.parametrize("target", ["/\t/evil.example", "/\n/evil.example", "/ /evil.example", "/\\evil.example",
                                    "//evil.example", "https://evil.example/", "\t//evil.example",
                                    "/%09/evil.example/\u3000"])
def test_login_next_never_leaves_the_site(client, target):
    sign_up(client, "nx@example.com")
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    form = {"email": "nx@example.com", "password": "secret-pw", "next": target, "csrf_token": csrf_of(client)}
    plain = client.post("/login", data=form)
    assert plain.status_code == 303 and plain.headers["Location"] == "/dashboard"
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    hx = client.post("/login", data={**form, "csrf_token": csrf_of(client)}, headers=HX)
    assert hx.headers["HX-Redirect"] == "/dashboard"


def test_login_next_keeps_a_local_path(client):
    sign_up(client, "np@example.com")
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    resp = client.post("/login", data={"email": "np@example.com", "password": "secret-pw",
                                       "next": "/dashboard/requests?page=2", "csrf_token": csrf_of(client)})
    assert resp.headers["Location"] == "/dashboard/requests?page=2"


def test_dashboard_title_is_just_the_title(client):
    sign_up(client)
    html = client.get("/dashboard").get_data(as_text=True)
    assert re.search(r"<title>([^<]*)</title>", html).group(1) == "Dashboard · Kyma gateway"
    assert html.count('id="dashboard-uptime"') == 1


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Origin": "http://localhost.evil.example"},
                                     {"Origin": "", "Referer": "http://evil.example/page"}, {"Origin": ""}])
def test_unsafe_request_from_another_origin_is_refused_despite_a_valid_token(client, headers):
    sign_up(client)
    token = csrf_of(client)
    resp = client.post("/dashboard/keys", data={"name": "forged"}, headers={**HX, "X-CSRF-Token": token, **headers})
    assert resp.status_code == 403
    assert not ApiKey.select().where(ApiKey.name == "forged").exists()


def test_referer_stands_in_for_a_missing_origin(client):
    sign_up(client)
    headers = {**HX, "X-CSRF-Token": csrf_of(client), "Origin": "", "Referer": "http://localhost/dashboard"}
    assert client.post("/dashboard/keys", data={"name": "via-referer"}, headers=headers).status_code == 201


@pytest.mark.parametrize("token", ["jeton-été", "\u2603" * 43])
def test_non_ascii_csrf_token_is_a_403_not_a_crash(client, token):
    sign_up(client)
    assert client.post("/dashboard/keys", data={"name": "n", "csrf_token": token}).status_code == 403
    as_header = token.encode().decode("latin-1")  # what WSGI makes of UTF-8 header bytes
    assert client.post("/dashboard/keys", data={"name": "n"}, headers={"X-CSRF-Token": as_header}).status_code == 403


def test_request_log_page_is_bounded(client):
    sign_up(client)
    assert client.get("/dashboard/requests?page=99999999999999999999", headers=HX).status_code == 200
    assert client.get("/dashboard/requests?page=0", headers=HX).status_code == 400
    assert client.get("/dashboard/requests?page=-3").status_code == 400


def test_strict_transport_security_only_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/login").headers
    secure = client.get("/login", base_url="https://gw.example")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_signup_form_is_throttled_per_address_with_retry_after(app):
    from kyma.runtime import runtime

    with app.app_context():
        limited = dataclasses.replace(runtime().settings, signup_max_per_hour=2)
        app.extensions["kyma"].settings = limited
    client = browser(app)
    for i in range(2):
        sign_up(client, email=f"web{i}@example.com")
        client = browser(app)  # a new visitor from the same address
    resp = client.post("/signup", data={"email": "web9@example.com", "password": "secret-pw",
                                        "csrf_token": csrf_of(client)})
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
