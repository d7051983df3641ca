"""The dashboard's request log (filters, sort, key column, CSV export) and usage views, through the Flask client."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

import pytest

from kyma.models import ApiKey, RequestLog, utcnow
from tests.percentiles import percentile
from tests.test_web import HX, account_id, browser, log_request, sign_up


def ids_in(html: str) -> list[str]:
    """The request ids of the log rows, in the order shown."""
    return re.findall(r'data-request="([^"]+)"', html)


def log_of(client, query: str = "") -> str:
    return client.get(f"/dashboard/requests{query}", headers={**HX, "HX-Target": "requests"}).get_data(as_text=True)


def csv_of(client, query: str = "") -> list[dict]:
    resp = client.get(f"/dashboard/requests.csv{query}")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))


@pytest.fixture()
def client(app):
    return browser(app)


@pytest.fixture()
def me(client):
    sign_up(client, "log@example.com")
    return account_id("log@example.com")


def key_of(account: int, name: str) -> ApiKey:
    return ApiKey.create(account=account, name=name, key_hash=f"hash-{name}-{account}", prefix="ky-abc")


def test_date_range_is_utc_days_both_included(client, me):
    log_request(me, request_id="before", created_at=datetime(2026, 3, 1, 23, 59, 59))
    log_request(me, request_id="first-day", created_at=datetime(2026, 3, 2, 0, 0, 0))
    log_request(me, request_id="last-day", created_at=datetime(2026, 3, 4, 23, 59, 59))
    log_request(me, request_id="after", created_at=datetime(2026, 3, 5, 0, 0, 0))
    html = log_of(client, "?from=2026-03-02&to=2026-03-04")
    assert ids_in(html) == ["last-day", "first-day"]
    assert "UTC day" in html and 'value="2026-03-02"' in html
    assert ids_in(log_of(client, "?from=2026-03-05")) == ["after"]
    assert ids_in(log_of(client, "?to=2026-03-01")) == ["before"]
    assert len(ids_in(log_of(client, "?from=2026-13-40"))) == 4  # a malformed date leaves the filter off


def test_request_id_search_is_exact_or_prefix(client, me):
    for rid in ("chatcmpl-abc1", "chatcmpl-abc2", "chatcmpl-xyz", "msg_50%_off"):
        log_request(me, request_id=rid)
    assert sorted(ids_in(log_of(client, "?q=chatcmpl-abc"))) == ["chatcmpl-abc1", "chatcmpl-abc2"]
    assert ids_in(log_of(client, "?q=chatcmpl-xyz")) == ["chatcmpl-xyz"]
    assert ids_in(log_of(client, "?q=msg_50%25")) == ["msg_50%_off"]
    assert ids_in(log_of(client, "?q=%25")) == []  # a wildcard is a character, not "anything"
    assert ids_in(log_of(client, "?q=abc")) == []  # the beginning of the id, not any part of it


def test_key_filter_and_column_name_the_key_or_session(client, me):
    laptop, ci = key_of(me, "laptop"), key_of(me, "ci-runner")
    log_request(me, request_id="by-laptop", api_key=laptop.id)
    log_request(me, request_id="by-ci", api_key=ci.id)
    log_request(me, request_id="by-session", api_key=None)
    html = log_of(client)
    keys = dict(zip(ids_in(html), re.findall(r'data-label="Key">(?:<span class="muted">)?([^<]*)<', html)))
    assert keys == {"by-laptop": "laptop", "by-ci": "ci-runner", "by-session": "session"}
    assert ids_in(log_of(client, f"?key={laptop.id}")) == ["by-laptop"]
    assert ids_in(log_of(client, "?key=session")) == ["by-session"]
    assert f'<option value="{ci.id}" selected>ci-runner</option>' in log_of(client, f"?key={ci.id}")


def test_sort_by_cost_latency_tokens_and_time_both_ways(client, me):
    now = utcnow()
    log_request(me, request_id="a", cost_micros=30, latency_ms=500, prompt_tokens=1, completion_tokens=1,
                created_at=now - timedelta(minutes=3))
    log_request(me, request_id="b", cost_micros=10, latency_ms=900, prompt_tokens=50, completion_tokens=50,
                created_at=now - timedelta(minutes=2))
    log_request(me, request_id="c", cost_micros=20, latency_ms=100, prompt_tokens=5, completion_tokens=5,
                created_at=now - timedelta(minutes=1))
    assert ids_in(log_of(client)) == ["c", "b", "a"]  # newest first by default
    assert ids_in(log_of(client, "?sort=time&dir=asc")) == ["a", "b", "c"]
    assert ids_in(log_of(client, "?sort=cost")) == ["a", "c", "b"]
    assert ids_in(log_of(client, "?sort=cost&dir=asc")) == ["b", "c", "a"]
    assert ids_in(log_of(client, "?sort=latency")) == ["b", "a", "c"]
    assert ids_in(log_of(client, "?sort=tokens&dir=asc")) == ["a", "c", "b"]
    html = log_of(client, "?sort=cost&dir=asc")
    th = re.search(r'<th scope="col" class="num" aria-sort="ascending">\s*<a href="([^"]+)"[^>]*id="sort-cost"', html)
    assert th and "sort=cost" in th.group(1) and "dir=" not in th.group(1)  # the link flips to descending
    assert html.count("aria-sort=") == 1
    assert '<option value="cost" selected>' in html and '<option value="asc" selected>' in html  # phones sort here
    assert ids_in(log_of(client, "?sort=bogus&dir=sideways")) == ["c", "b", "a"]


def test_a_filter_change_puts_only_the_filters_in_use_in_the_url(client, me):
    log_request(me, request_id="x")
    from_dashboard = {**HX, "HX-Target": "requests", "HX-Current-URL": "http://localhost/dashboard"}
    resp = client.get("/dashboard/requests?model=&status=ok&key=&from=2026-01-02&to=&q=&sort=cost",
                      headers=from_dashboard)
    assert resp.headers["HX-Push-Url"] == "/dashboard?status=ok&from=2026-01-02&sort=cost"
    own_page = {**HX, "HX-Target": "requests", "HX-Current-URL": "http://localhost/dashboard/requests"}
    assert client.get("/dashboard/requests?status=error", headers=own_page).headers["HX-Push-Url"] == \
        "/dashboard/requests?status=error"
    results = client.get("/dashboard/requests?status=ok&q=x", headers={**from_dashboard, "HX-Target": "log-results"})
    body = results.get_data(as_text=True)
    assert 'id="log-rows"' in body and 'id="log-filters"' not in body  # the filters being typed in stay put
    assert results.headers["HX-Push-Url"] == "/dashboard?status=ok&q=x"
    refresh = client.get("/dashboard/requests?status=ok", headers={**HX, "HX-Target": "log-rows"})
    assert "HX-Push-Url" not in refresh.headers  # the 10 s refresh adds no history entries
    page = client.get("/dashboard?status=ok&sort=cost&dir=asc").get_data(as_text=True)  # a bookmark reloads it
    assert 'value="ok" selected' in page and 'aria-sort="ascending"' in page
    rows = re.search(r'id="log-rows"\s+hx-get="([^"]+)"', page).group(1)
    assert rows == "/dashboard/requests?status=ok&amp;sort=cost&amp;dir=asc"  # the refresh keeps the filters


def test_csv_has_exactly_the_filtered_rows_in_the_logs_order(client, me):
    laptop = key_of(me, "laptop")
    now = utcnow()
    for i in range(30):
        log_request(me, request_id=f"r-{i:02d}", api_key=laptop.id if i % 2 else None, cost_micros=1000 + i,
                    status=200 if i % 3 else 502, created_at=now - timedelta(minutes=i))
    query = f"?status=ok&key={laptop.id}&sort=cost&dir=asc"
    shown = ids_in(log_of(client, query))
    rows = csv_of(client, query)
    assert [r["request_id"] for r in rows] == shown and len(shown) == 10  # one page holds them all
    assert all(r["key"] == "laptop" and r["status"] == "200" for r in rows)
    first = RequestLog.get(RequestLog.request_id == shown[0])
    assert rows[0] == {
        "time_utc": first.created_at.isoformat(timespec="seconds") + "Z", "request_id": first.request_id,
        "key": "laptop", "endpoint": "/v1/chat/completions", "model_requested": "fast",
        "model_served": "llama-3.3-70b", "provider": "sim-alpha", "status": "200", "prompt_tokens": "12",
        "completion_tokens": "30", "cost_usd": f"0.{first.cost_micros:06d}", "latency_ms": "120", "ttft_ms": "40",
        "fallback_layer": "0", "error": ""}
    everything = csv_of(client)
    assert len(everything) == 30 and len(ids_in(log_of(client))) == 20  # every page, not just the first


def test_csv_is_streamed_in_batches(client, me, monkeypatch):
    from kyma.services import request_log

    monkeypatch.setattr(request_log, "EXPORT_BATCH", 7)
    for i in range(23):
        log_request(me, request_id=f"s-{i:02d}", created_at=utcnow() - timedelta(seconds=i), cost_micros=i % 4)
    resp = client.get("/dashboard/requests.csv?sort=cost")
    assert resp.is_streamed
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    chunks = list(resp.response)
    assert len(chunks) == 1 + 4  # the header, then 23 rows in batches of 7
    ids = [r["request_id"] for r in csv.DictReader(io.StringIO("".join(c.decode() if isinstance(c, bytes) else c
                                                                      for c in chunks)))]
    assert len(ids) == len(set(ids)) == 23  # keyset batches: no row twice, none left out
    assert ids == ids_in(log_of(client, "?sort=cost")) + ids_in(log_of(client, "?sort=cost&page=2"))


def test_csv_cells_never_run_as_spreadsheet_formulas(client, me):
    key = key_of(me, "=HYPERLINK(\"http://evil\")")
    log_request(me, request_id="@evil", api_key=key.id, error="+cmd|' /C calc'!A0", model_requested="-2+3",
                provider="\tsneaky", status=502)
    row = csv_of(client)[0]
    assert row["key"] == "'=HYPERLINK(\"http://evil\")"
    assert row["request_id"] == "'@evil" and row["error"] == "'+cmd|' /C calc'!A0"
    assert row["model_requested"] == "'-2+3" and row["provider"] == "'\tsneaky"
    assert row["status"] == "502"


def test_csv_and_log_hold_only_the_signed_in_accounts_rows(app):
    owner, other = browser(app), browser(app)
    sign_up(owner, "owner@example.com")
    sign_up(other, "other@example.com")
    log_request(account_id("owner@example.com"), request_id="owners-secret")
    log_request(account_id("other@example.com"), request_id="others-own")
    assert [r["request_id"] for r in csv_of(other)] == ["others-own"]
    assert [r["request_id"] for r in csv_of(other, "?q=owners")] == []
    assert ids_in(log_of(other, "?q=owners-secret")) == []
    assert "owners-secret" not in other.get("/dashboard").get_data(as_text=True)
    assert [r["request_id"] for r in csv_of(owner)] == ["owners-secret"]


def test_csv_needs_a_session(app):
    resp = app.test_client().get("/dashboard/requests.csv")
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/login")


def test_usage_charts_per_day_and_hour_with_labelled_axes(client, me):
    now = utcnow()
    log_request(me, request_id="now", cost_micros=2_000, prompt_tokens=10, completion_tokens=20, created_at=now)
    log_request(me, request_id="3d", cost_micros=500, prompt_tokens=1, completion_tokens=1,
                created_at=now - timedelta(days=3))
    log_request(me, request_id="40d", cost_micros=7, created_at=now - timedelta(days=40))
    week = client.get("/dashboard/usage?range=7d", headers=HX).get_data(as_text=True)
    assert "<html" not in week
    spend = re.search(r'<svg[^>]*id="usage-spend"[^>]*>(.*?)</svg>', week, re.S).group(1)
    assert spend.count("<rect") == 7 and "USD" in spend and "day (UTC)" in spend
    assert re.findall(r'class="tick end y-tick">([^<]*)<', spend) == ["$0.000000", "$0.001000", "$0.002000"]
    assert now.strftime("%m-%d") in spend  # the last day is labelled on the time axis
    assert f"{now:%Y-%m-%d} UTC: $0.002000" in spend
    assert re.search(r'id="usage-totals">Last 7 days: 2 requests,\s+32 tokens, \$0.002500', week)
    tokens = re.search(r'<svg[^>]*id="usage-tokens"[^>]*>(.*?)</svg>', week, re.S).group(1)
    assert ">tokens<" in tokens and re.findall(r'y-tick">([^<]*)<', tokens) == ["0", "25", "50"]  # 30 on a round axis
    requests = re.search(r'<svg[^>]*id="usage-requests"[^>]*>(.*?)</svg>', week, re.S).group(1)
    assert re.findall(r'y-tick">([^<]*)<', requests) == ["0", "1"]  # never half a request
    month = client.get("/dashboard/usage?range=30d", headers=HX).get_data(as_text=True)
    assert 'id="usage-requests"' in month and "Last 30 days: 2 requests" in month
    day = client.get("/dashboard/usage?range=24h", headers=HX).get_data(as_text=True)
    hours = re.search(r'<svg[^>]*id="usage-requests"[^>]*>(.*?)</svg>', day, re.S).group(1)
    assert hours.count("<rect") == 24 and "hour (UTC)" in hours and f"{now:%H}:00" in hours
    assert "Last 24 hours: 1 requests" in day
    assert 'id="range-24h" aria-current="true"' in day


def test_value_axes_end_on_round_numbers():
    from kyma.web.charts import nice_ceiling, time_chart

    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 10, 11, 65, 2000, 2001, 78_000)] == \
        [0, 1, 5, 10, 10, 20, 100, 2000, 5000, 100_000]
    points = [(datetime(2026, 1, d), v) for d, v in ((1, 0), (2, 40), (3, 100))]
    chart = time_chart(points, str, False, "tokens", height=170)
    assert [t.text for t in chart.y_ticks] == ["0", "50", "100"]
    assert [b.height for b in chart.bars] == [0, 44.0, 110.0]  # the plot is 110 units tall
    assert [t.text for t in chart.x_ticks] == ["01-01", "01-02", "01-03"] and chart.x_title == "day (UTC)"


def test_speed_per_model_is_median_ttft_and_tokens_per_second(client, me):
    for ttft, latency, tokens in ((100, 1100, 50), (300, 1300, 50), (200, 1200, 100), (900, 1000, 5)):
        log_request(me, model_served="kimi-k2.5", ttft_ms=ttft, latency_ms=latency, completion_tokens=tokens)
    log_request(me, model_served="kimi-k2.5", ttft_ms=5, latency_ms=10, status=502, completion_tokens=0)  # failed
    log_request(me, model_served="glm-5.1", ttft_ms=None, latency_ms=50)  # not timed
    html = client.get("/dashboard/usage?range=24h", headers=HX).get_data(as_text=True)
    row = re.search(r'<tr data-model="kimi-k2.5">(.*?)</tr>', html, re.S).group(1)
    assert 'data-label="Requests">4<' in row
    assert 'data-label="TTFT p50">200 ms<' in row  # nearest rank: the 2nd of 100, 200, 300, 900
    assert 'data-label="Tokens/s">66.1<' in row  # 205 tokens over 3.1 s after the first token
    assert 'data-model="glm-5.1"' not in html


def test_dashboard_shows_usage_and_the_log_tools(client, me):
    html = client.get("/dashboard").get_data(as_text=True)
    assert 'id="usage-requests"' in html and 'id="speed-table"' in html
    assert re.search(r'id="log-csv"[^>]*download|download[^>]*id="log-csv"', html)
    assert 'id="range-7d" aria-current="true"' in html


def _queries_on_this_database() -> None:
    from kyma.models import Account
    from kyma.services import request_log, usage

    acct = Account.create(email=f"q-{utcnow().timestamp()}@example.com", password_hash="x")
    now = datetime(2026, 5, 10, 15, 30)
    for i, (model, ttft, latency, tokens) in enumerate((("a", 100, 1100, 50), ("a", 300, 1300, 50),
                                                         ("a", 200, 1200, 100), ("b", 50, 550, 10))):
        RequestLog.create(request_id=f"pg-{acct.id}-{i}", account=acct, endpoint="/v1/chat/completions",
                          model_served=model, status=200, prompt_tokens=1, completion_tokens=tokens,
                          cost_micros=10 * (i % 2), latency_ms=latency, ttft_ms=ttft,
                          created_at=now - timedelta(hours=i))
    hours = usage.usage_series(acct.id, usage.RANGES["24h"], now)
    assert [(b.start.hour, b.requests, b.tokens) for b in hours if b.requests] == \
        [(12, 1, 11), (13, 1, 101), (14, 1, 51), (15, 1, 51)]
    days = usage.usage_series(acct.id, usage.RANGES["7d"], now)
    assert days[-1].start == datetime(2026, 5, 10) and (days[-1].requests, days[-1].cost_micros) == (4, 20)
    for i, ttft in enumerate((80, 40)):  # an even count, days back: the console's p50 and the dashboard's agree
        RequestLog.create(request_id=f"even-{acct.id}-{i}", account=acct, endpoint="chat", model_served="c",
                          status=200, latency_ms=1000, ttft_ms=ttft, created_at=now - timedelta(days=3))
    speeds = {s.model: s for s in usage.model_speeds(acct.id, usage.RANGES["7d"], now)}
    assert speeds["a"].ttft_p50_ms == 200 and round(speeds["a"].tokens_per_second, 2) == 66.67
    assert speeds["b"].ttft_p50_ms == 50 and speeds["b"].tokens_per_second == 20
    assert speeds["c"].ttft_p50_ms == percentile([80, 40], 50) == 40
    flt = request_log.LogFilter(sort="cost", direction="asc", request_id=f"pg-{acct.id}-")
    batches = list(request_log.export_batches(acct.id, flt, batch=3))
    assert [len(b) for b in batches] == [3, 1]
    assert [r.request_id for b in batches for r in b] == [f"pg-{acct.id}-{i}" for i in (0, 2, 1, 3)]
    day = request_log.LogFilter(since=now.date(), until=now.date(), sort="tokens")
    assert [r.request_id for r in request_log.request_log(acct.id, day).rows][0] == f"pg-{acct.id}-2"


def test_usage_and_log_queries(backend_db):
    _queries_on_this_database()
