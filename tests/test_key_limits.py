"""Per-key limits end to end: the openai and anthropic SDKs → gunicorn gateway → simulators."""

from __future__ import annotations

import re
import time

import openai
import pytest
import requests

from tests.conftest import register
from tests.gated import FIRST_BYTE_TIMEOUT, GATE, gated
from tests.servers import announce_key_change, db_rows, flask_here, gateway_env, start_gateway

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "Hello there"}]


def _session(account) -> dict:
    return {"Authorization": f"Bearer {account['session_token']}"}


def _new_key(gateway, account, **limits) -> dict:
    r = requests.post(f"{gateway.url}/v1/auth/keys", json={"name": "ci", **limits}, headers=_session(account),
                      timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def _patch(gateway, account, key_id, **fields):
    return requests.patch(f"{gateway.url}/v1/auth/keys/{key_id}", json=fields, headers=_session(account), timeout=10)


def _sdk(gateway, key: str, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30,
                         default_headers=headers)


def _hold_of(gateway, account, body) -> int:
    """The hold a request takes, in micro-dollars, read from the 402 a zero-limit key gets."""
    key = _new_key(gateway, account, credit_limit=0)
    with pytest.raises(openai.APIStatusError) as refused:
        _sdk(gateway, key["key"]).chat.completions.create(**body)
    assert refused.value.status_code == 402
    return round(float(re.search(r"may cost up to \$([0-9.]+)", refused.value.message).group(1)) * 1_000_000)


@pytest.fixture()
def patient(tmp_path_factory, simulators):
    """A 2-worker gateway on the shared simulators that waits for a first byte as long as a race for
    credit may take (tests/gated.py), with an account of its own."""
    workdir = tmp_path_factory.mktemp("patient")
    base, sims = simulators
    gw = start_gateway(workdir, gateway_env(workdir, base, KYMA_FIRST_BYTE_TIMEOUT=FIRST_BYTE_TIMEOUT), workers=2)
    try:
        yield gw, {"email": "patient@example.com", **register(gw.url, "patient@example.com")}, [s.url for s in sims]
    finally:
        gw.stop()


def test_credit_limit_is_exact_under_concurrent_requests(patient):
    gateway, account, simulators = patient
    body = {"model": "glm-4.7-flash", "messages": HELLO, "max_tokens": 40}
    hold = _hold_of(gateway, account, body)
    key = _new_key(gateway, account)
    r = _patch(gateway, account, key["id"], credit_limit=5 * hold / 1_000_000)
    assert r.status_code == 200 and r.json()["credit_limit"] == 5 * hold / 1_000_000, r.text
    # Held at the simulators' gate until all twenty are admitted or refused: no answer settles meanwhile.
    client = _sdk(gateway, key["key"], **GATE).with_options(timeout=90)

    def one():
        try:
            client.chat.completions.create(**body)
            return 200, ""
        except openai.APIStatusError as exc:
            return exc.status_code, exc.message

    results = gated(simulators, [one] * 20)
    assert sorted(s for s, _ in results) == [200] * 5 + [402] * 15, results
    for _, message in (r for r in results if r[0] == 402):
        assert "API key 'ci'" in message and "credit limit of $" in message
    assert flask_here(gateway.env, "ledger", "check").returncode == 0
    account_id = int(account["user_id"])
    assert db_rows(gateway.env, "SELECT COUNT(*) FROM hold WHERE account_id = {p} AND closed_at IS NULL",
                   account_id) == [(0,)]
    refused = db_rows(gateway.env, "SELECT COUNT(*), COALESCE(SUM(cost_micros), 0) FROM requestlog "
                      "WHERE api_key_id = {p} AND status = 402", key["id"])
    assert refused == [(15, 0)]
    listed = requests.get(f"{gateway.url}/v1/auth/keys", headers=_session(account), timeout=10).json()["keys"]
    mine = next(k for k in listed if k["id"] == key["id"])
    charged = int(db_rows(gateway.env, "SELECT SUM(cost_micros) FROM requestlog WHERE api_key_id = {p}",
                          key["id"])[0][0])
    assert mine["usage"]["requests"] == 20 and mine["usage"]["requests_30d"] == 20
    assert mine["usage"]["spend"] == charged / 1_000_000 and charged > 0
    assert mine["limit_remaining"] == (5 * hold - charged) / 1_000_000
    assert mine["last_used_at"] is not None


def test_expired_key_is_401_saying_so(gateway, account):
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    key = _new_key(gateway, account, expires_at=expires)
    assert key["expires_at"] == expires
    _sdk(gateway, key["key"]).chat.completions.create(model="fast", messages=HELLO, max_tokens=8)
    # The hour passes in the database (UTC, as stored) instead of in the test.
    db_rows(gateway.env, "UPDATE apikey SET expires_at = {p} WHERE id = {p}", "2000-01-01 00:00:00", key["id"])
    announce_key_change(gateway.env)  # a change behind the services' back: say so, as they do
    with pytest.raises(openai.AuthenticationError) as refused:
        _sdk(gateway, key["key"]).chat.completions.create(model="fast", messages=HELLO, max_tokens=8)
    assert "expired" in refused.value.message and refused.value.code == "expired_api_key"
    assert _patch(gateway, account, key["id"], expires_at=None).status_code == 200
    _sdk(gateway, key["key"]).chat.completions.create(model="fast", messages=HELLO, max_tokens=8)


def test_allow_list_refuses_other_models_and_never_falls_back_outside_it(gateway, account):
    key = _new_key(gateway, account, allowed_models=["fast", "glm-4.7-flash"])
    assert key["allowed_models"] == ["fast", "glm-4.7-flash"]
    client = _sdk(gateway, key["key"])
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="glm-5.1", messages=HELLO, max_tokens=8)
    assert "'glm-5.1'" in refused.value.message and "fast, glm-4.7-flash" in refused.value.message
    assert client.chat.completions.create(model="llama-3.3-70b", messages=HELLO, max_tokens=8).model == "llama-3.3-70b"
    # Every llama route fails: without the list this falls back to another family (layer 3).
    failing = _sdk(gateway, key["key"], **{"X-Kyma-Sim-Fault": "*@llama-3.3-70b=500"})
    with pytest.raises(openai.APIStatusError) as failed:
        failing.chat.completions.create(model="fast", messages=HELLO, max_tokens=8)
    assert failed.value.status_code >= 500
    served = db_rows(gateway.env, "SELECT DISTINCT model_served FROM requestlog WHERE api_key_id = {p} "
                     "AND model_served IS NOT NULL", key["id"])
    assert served == [("llama-3.3-70b",)]
    # A claude-* name counts as the model it maps to (claude-haiku-4-5 → glm-4.7-flash).
    anthropic = {"x-api-key": key["key"], "anthropic-version": "2023-06-01"}
    ok = requests.post(f"{gateway.url}/v1/messages", headers=anthropic, timeout=30,
                       json={"model": "claude-haiku-4-5", "max_tokens": 8, "messages": HELLO})
    assert ok.status_code == 200, ok.text
    no = requests.post(f"{gateway.url}/v1/messages", headers=anthropic, timeout=30,
                       json={"model": "claude-opus-4-5", "max_tokens": 8, "messages": HELLO})
    assert no.status_code == 403 and no.json()["error"]["type"] == "permission_error", no.text
    assert "qwen-3.6-plus" in no.json()["error"]["message"]


def test_key_limit_402_has_the_anthropic_shape(gateway, account):
    key = _new_key(gateway, account, credit_limit=0)
    r = requests.post(f"{gateway.url}/v1/messages", timeout=30,
                      headers={"x-api-key": key["key"], "anthropic-version": "2023-06-01"},
                      json={"model": "claude-haiku-4-5", "max_tokens": 8, "messages": HELLO})
    assert r.status_code == 402 and r.json()["type"] == "error", r.text
    assert r.json()["error"]["type"] == "billing_error" and "API key 'ci'" in r.json()["error"]["message"]


def test_patch_changes_and_clears_limits(gateway, account):
    key = _new_key(gateway, account, credit_limit=0)
    client = _sdk(gateway, key["key"])
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="fast", messages=HELLO, max_tokens=8)
    r = _patch(gateway, account, key["id"], credit_limit=None, allowed_models=["cheap"])
    assert r.status_code == 200 and r.json()["credit_limit"] is None and r.json()["allowed_models"] == ["cheap"]
    assert client.chat.completions.create(model="cheap", messages=HELLO, max_tokens=8).model == "glm-4.7-flash"
    r = _patch(gateway, account, key["id"], allowed_models=None)
    assert r.status_code == 200 and r.json()["allowed_models"] is None
    assert client.chat.completions.create(model="fast", messages=HELLO, max_tokens=8)
    # A limit set later counts what the key was already charged.
    r = _patch(gateway, account, key["id"], credit_limit=1)
    charged = int(db_rows(gateway.env, "SELECT SUM(cost_micros) FROM requestlog WHERE api_key_id = {p}",
                          key["id"])[0][0])
    assert r.json()["limit_remaining"] == (1_000_000 - charged) / 1_000_000
