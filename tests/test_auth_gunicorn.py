"""Accounts on the real server: gunicorn with 2 gevent workers, the openai SDK as the client."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from tests.conftest import register
from tests.servers import gateway_env, start_gateway

pytestmark = pytest.mark.integration  # real gunicorn processes: run again on PostgreSQL + Redis


def _email(who: str) -> str:
    """An address no other test on the shared gateway registers."""
    return f"{who}-{uuid.uuid4().hex[:12]}@example.com"


def _me_status(base: str, key: str) -> int:
    # A fresh connection per call, so the requests spread over both workers.
    sdk = openai.OpenAI(api_key=key, base_url=f"{base}/v1", max_retries=0)
    try:
        sdk.get("/auth/me", cast_to=object)
        return 200
    except openai.AuthenticationError as err:
        assert err.body["type"] == "authentication_error"
        assert key not in str(err.response.text)
        return 401
    finally:
        sdk.close()


def test_register_then_revoke_is_refused_by_every_worker(gateway):
    base = gateway.url
    reg = register(base, _email("ops"))
    session = reg["session_token"]
    extra = requests.post(f"{base}/v1/auth/keys", json={"name": "doomed"},
                          headers={"Authorization": f"Bearer {session}"}, timeout=10).json()

    with ThreadPoolExecutor(4) as pool:
        before = list(pool.map(lambda _: _me_status(base, extra["key"]), range(10)))
    assert before == [200] * 10

    gone = requests.delete(f"{base}/v1/auth/keys/{extra['id']}", headers={"Authorization": f"Bearer {session}"},
                           timeout=10)
    assert gone.status_code == 200

    with ThreadPoolExecutor(4) as pool:
        after = list(pool.map(lambda _: _me_status(base, extra["key"]), range(10)))
    assert after == [401] * 10
    # The account's other credentials still work.
    assert _me_status(base, reg["api_key"]) == 200
    assert _me_status(base, session) == 200


def test_login_over_http_and_bcrypt_under_gevent(gateway):
    base = gateway.url
    creds = {"email": _email("pat"), "password": "pa55word"}
    register(base, **creds)
    ok = requests.post(f"{base}/v1/auth/login", json=creds, timeout=10)
    assert ok.status_code == 200 and ok.json()["session_token"].startswith("ks-")
    bad = requests.post(f"{base}/v1/auth/login", json={**creds, "password": "nope-nope"}, timeout=10)
    unknown = requests.post(f"{base}/v1/auth/login", json={"email": _email("nobody"), "password": "nope-nope"},
                            timeout=10)
    assert bad.status_code == unknown.status_code == 401 and bad.content == unknown.content


@pytest.mark.parametrize("proxies", [0, 1])
def test_forwarded_scheme_headers_are_believed_only_from_a_trusted_proxy(gateway, tmp_path, proxies):
    """From 127.0.0.1, which gunicorn trusts by default: X-Forwarded-Proto and X-Forwarded-Ssl change
    nothing with KYMA_TRUSTED_PROXIES=0 (the shared gateway's), and X-Forwarded-Proto is the scheme with 1."""
    gw = start_gateway(tmp_path, gateway_env(tmp_path, sim_base_port=1, KYMA_TRUSTED_PROXIES=1)) if proxies \
        else gateway
    try:
        claims = {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on", "X-Forwarded-Protocol": "https"}
        llms = requests.get(f"{gw.url}/llms.txt", headers=claims, timeout=10).text
        login = requests.get(f"{gw.url}/login", headers=claims, timeout=10)
        if proxies:
            assert "https://127.0.0.1" in llms and "Strict-Transport-Security" in login.headers
        else:
            assert "https://" not in llms and f"http://127.0.0.1:{gw.port}" in llms
            assert "Strict-Transport-Security" not in login.headers
            assert "secure" not in login.headers.get("Set-Cookie", "").lower()
    finally:
        if gw is not gateway:
            gw.stop()
