"""The dashboard's request log (filters, sort, key column, CSV export) and usage views, through the Flask client."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

import pytest

from kyma.models import ApiKey, RequestLog, utcnow
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
    refresh = client.get("/dashboard/requests?status=ok", headers={**HX, "HX-Target": "log-rows"})
    assert "HX-Push-Url" not in refresh.headers  # the 10 s refresh adds no history entries
    page = client.get("/dashboard?status=ok&sort=cost&dir=asc").get_data(as_text=True)  # a bookmark reloads it
    assert 'value="ok" selected' in page and 'aria-sort="ascending"' in page
    rows = re.search(r'id="log-rows"\s+hx-get="([^"]+)"', page).group(1)
    assert rows == "/dashboard/requests?status=ok&amp;sort=cost&amp;dir=asc"  # the refresh keeps the filters
