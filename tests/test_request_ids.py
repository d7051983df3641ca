"""X-Request-Id: a client's well-formed id begins the gateway's; a reused one still bills and logs apart."""

from __future__ import annotations

import pytest
import requests

from kyma import ids
from kyma.api.request_ids import request_id
from tests.servers import db_rows


@pytest.mark.parametrize("incoming", ["a", "trace-123", "svc:req_9.1", "x" * 47])
def test_a_well_formed_id_begins_the_request_id(incoming):
    rid = request_id(incoming)
    assert rid.startswith(incoming + ".") and len(rid) == len(incoming) + 17 and len(rid) <= 64
    assert request_id(incoming) != rid  # the same id twice makes two request ids


@pytest.mark.parametrize("incoming", [None, "", "x" * 48, "a b", "a/b", "ky-abc\n", "é", "a;b", "<script>"])
def test_anything_else_gets_a_new_id(incoming):
    rid = request_id(incoming)
    assert len(rid) == 32 and all(c in "0123456789abcdef" for c in rid)


def test_new_ids_sort_by_the_millisecond_they_were_made_and_stay_unique(monkeypatch):
    clock = iter([1_796_000_000_000_000_000, 1_796_000_000_000_900_000, 1_796_000_000_001_000_000] * 2)
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock))
    first, same_ms, next_ms = request_id(None), request_id(None), request_id(None)
    assert first[:12] == same_ms[:12] == f"{1_796_000_000_000:012x}" and next_ms[:12] == f"{1_796_000_000_001:012x}"
    assert first != same_ms and next_ms > max(first, same_ms)
    assert len({request_id(None) for _ in range(3)}) == 3  # the same clock again: the random tail differs


@pytest.mark.integration
def test_a_reused_client_id_bills_and_logs_each_request(gateway, account):
    headers = {"Authorization": f"Bearer {account['api_key']}", "X-Request-Id": "client-trace-7"}
    body = {"model": "kimi-k2.5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    answers = [requests.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=30)
               for _ in range(2)]
    refused = requests.post(f"{gateway.url}/v1/chat/completions", json={**body, "model": "no-such-model"},
                            headers=headers, timeout=30)
    assert [r.status_code for r in answers] == [200, 200] and refused.status_code == 404
    ids = [r.headers["X-Request-Id"] for r in (*answers, refused)]
    assert len(set(ids)) == 3 and all(rid.startswith("client-trace-7.") for rid in ids)
    logged = db_rows(gateway.env, "SELECT request_id, status, cost_micros FROM requestlog WHERE request_id LIKE {p}",
                     "client-trace-7.%")
    assert sorted((rid, status) for rid, status, _ in logged) == sorted(zip(ids, (200, 200, 404)))
    assert all(cost > 0 for _, status, cost in logged if status == 200)
    usage = db_rows(gateway.env, "SELECT request_id FROM ledgerentry WHERE kind = 'usage' AND request_id LIKE {p}",
                    "client-trace-7.%")
    assert sorted(r for (r,) in usage) == sorted(ids[:2])
    assert answers[0].json()["id"] == f"chatcmpl-{ids[0]}"


@pytest.mark.integration
def test_a_malformed_client_id_is_replaced(gateway, account):
    r = requests.post(f"{gateway.url}/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {account['api_key']}", "X-Request-Id": "bad id/../x"},
                      json={"model": "kimi-k2.5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and len(r.headers["X-Request-Id"]) == 32 and "bad" not in r.headers["X-Request-Id"]
