"""The admin console against a gunicorn gateway and simulators: suspension seen through the real
openai and anthropic SDKs, and circuits held open or routes disabled by hand moving traffic."""

from __future__ import annotations

import re
import uuid

import anthropic
import openai
import pytest
import requests

from tests.conftest import register
from tests.servers import flask_here

pytestmark = pytest.mark.integration

MODEL = "qwen-3-32b"  # served by sim-alpha, sim-beta and sim-gamma, in that order
HI = [{"role": "user", "content": "Hi"}]


class Console:
    """A signed-in admin's browser session, sending Origin and the CSRF token as a browser would."""

    def __init__(self, gateway):
        self.url, self.s = gateway.url, requests.Session()
        self.s.headers["Origin"] = gateway.url
        email = f"ops-{uuid.uuid4().hex[:10]}@example.com"
        register(self.url, email, "correct horse")
        assert flask_here(gateway.env, "admin", "grant", email).returncode == 0
        page = self.s.get(f"{self.url}/login").text
        self.token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        r = self.s.post(f"{self.url}/login", data={"email": email, "password": "correct horse",
                                                    "csrf_token": self.token}, allow_redirects=False)
        assert r.status_code == 303, r.text
        self.token = re.search(r'name="csrf_token" value="([^"]+)"', self.s.get(f"{self.url}/dashboard").text).group(1)

    def post(self, path: str, **form) -> requests.Response:
        r = self.s.post(self.url + path, data={"csrf_token": self.token, **form}, timeout=30)
        assert r.status_code == 200, r.text[:500]
        return r


def test_a_suspended_accounts_keys_get_403_in_each_protocol_until_reinstated(gateway, account):
    console = Console(gateway)
    oai = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=account["api_key"], max_retries=0)
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=account["api_key"], max_retries=0)
    console.post(f"/admin/accounts/{account['user_id']}/suspend", reason="test")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        oai.chat.completions.create(model=MODEL, messages=HI, max_tokens=8)
    assert refused.value.status_code == 403 and refused.value.code == "account_suspended"
    assert "suspended" in refused.value.message
    with pytest.raises(anthropic.PermissionDeniedError) as refused_a:
        claude.messages.create(model=MODEL, messages=HI, max_tokens=8)
    assert refused_a.value.body["error"]["type"] == "permission_error"
    assert "suspended" in refused_a.value.body["error"]["message"]
    console.post(f"/admin/accounts/{account['user_id']}/reinstate")
    assert oai.chat.completions.create(model=MODEL, messages=HI, max_tokens=8).choices[0].message.content
    assert claude.messages.create(model=MODEL, messages=HI, max_tokens=8).content[0].text


def test_a_circuit_held_open_or_a_disabled_route_moves_traffic_on(gateway, oai):
    console = Console(gateway)

    def provider() -> str:
        raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=HI, max_tokens=8)
        assert raw.parse().choices[0].message.content
        return raw.headers["X-Kyma-Provider"]

    assert provider() == "sim-alpha"
    try:
        console.post("/admin/routes/switch", route=f"sim-alpha/{MODEL}", action="open")
        assert {provider() for _ in range(4)} == {"sim-beta"}  # held open: never probed, however long
        console.post("/admin/routes/switch", route=f"sim-beta/{MODEL}", action="disable")
        assert provider() == "sim-gamma"
        page = console.s.get(f"{gateway.url}/admin/routes").text
        assert 'data-circuit="held open"' in page and 'data-circuit="disabled"' in page
    finally:
        console.post("/admin/routes/switch", route=f"sim-alpha/{MODEL}", action="close")
        console.post("/admin/routes/switch", route=f"sim-beta/{MODEL}", action="enable")
    assert provider() == "sim-alpha"
    audit = console.s.get(f"{gateway.url}/admin/audit").text
    for action in ("route.open", "route.disable", "route.close", "route.enable"):
        assert f'data-action="{action}"' in audit


def test_a_grant_form_sent_five_times_at_once_grants_once(gateway, account):
    from concurrent.futures import ThreadPoolExecutor

    from tests.servers import db_rows

    console = Console(gateway)
    key = uuid.uuid4().hex
    form = {"csrf_token": console.token, "usd": "2", "idempotency_key": key}
    url = f"{gateway.url}/admin/accounts/{account['user_id']}/credit"
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: console.s.post(url, data=form, timeout=30), range(5)))
    assert [r.status_code for r in answers] == [200] * 5
    assert sum("Credit granted." in r.text for r in answers) == 1
    grants = db_rows(gateway.env, "SELECT amount_micros FROM ledgerentry WHERE account_id = {p} AND kind = 'grant'",
                     int(account["user_id"]))
    assert grants == [(2_000_000,)]
    audited = db_rows(gateway.env, "SELECT count(*) FROM auditentry WHERE action = 'credit.grant' AND target = {p}",
                      account["email"])
    assert audited == [(1,)]
    assert flask_here(gateway.env, "ledger", "check").returncode == 0
