"""KYMA_LOG_FORMAT=json: one JSON line per finished request on stdout, and never a credential in the log."""

from __future__ import annotations

import json
import logging
import re

import openai
import pytest
import requests

from kyma import logs
from tests.conftest import register
from tests.servers import gateway_env, start_gateway

pytestmark = pytest.mark.integration


@pytest.fixture()
def json_gateway(tmp_path, simulators):
    base, _ = simulators
    proc = start_gateway(tmp_path, gateway_env(tmp_path, base, KYMA_LOG_FORMAT="json", KYMA_LOG_LEVEL="INFO"))
    yield proc
    proc.stop()


def test_every_request_gets_a_json_line_and_no_secret_is_logged(json_gateway):
    url = json_gateway.url
    password = "json-logs-password-1"
    reg = register(url, "logs@example.com", password)
    login = requests.post(f"{url}/v1/auth/login", json={"email": "logs@example.com", "password": password},
                          timeout=10).json()
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=reg["api_key"], max_retries=0)
    ok = client.chat.completions.with_raw_response.create(model="kimi-k2.5", max_tokens=8,
                                                          messages=[{"role": "user", "content": "say exactly: hi"}])
    stream = client.chat.completions.with_raw_response.create(model="kimi-k2.5", max_tokens=8, stream=True,
                                                              messages=[{"role": "user", "content": "count to 3"}])
    list(stream.parse())
    by_session = openai.OpenAI(base_url=f"{url}/v1", api_key=login["session_token"], max_retries=0)
    traced = by_session.chat.completions.with_raw_response.create(
        model="fast", max_tokens=8, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-Id": "trace-abc"})
    missing = requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {reg['api_key']}"},
                            json={"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}, timeout=10)
    wrong_key = requests.post(f"{url}/v1/messages", headers={"x-api-key": reg["api_key"] + "x"},
                              json={"model": "kimi-k2.5", "max_tokens": 8, "messages": []}, timeout=10)
    unrouted = requests.get(f"{url}/v1/{reg['api_key']}", headers={"Authorization": f"Bearer {reg['api_key']}"},
                            timeout=10)
    sent = {ok.headers["X-Request-Id"]: 200, stream.headers["X-Request-Id"]: 200,
            traced.headers["X-Request-Id"]: 200, missing.headers["X-Request-Id"]: 404,
            wrong_key.headers["X-Request-Id"]: 401, unrouted.headers["X-Request-Id"]: 404}
    json_gateway.stop()  # flushes every worker's output

    text = json_gateway.log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests_logged = {line["request_id"]: line for line in lines if line["logger"] == "kyma.requests"}
    assert {rid: requests_logged[rid]["status"] for rid in sent} == sent
    served = requests_logged[ok.headers["X-Request-Id"]]
    assert served["model_served"] == "kimi-k2.5" and served["cost_micros"] > 0 and served["account_id"]
    assert served["latency_ms"] > 0 and served["cached_tokens"] == 0 and served["simulated"] and served["ttft_ms"] is None and served["provider"] and served["attempts"] == 1
    streamed = requests_logged[stream.headers["X-Request-Id"]]
    assert streamed["stream"] and streamed["ttft_ms"] > 0 and streamed["completion_tokens"] > 0
    alias = requests_logged[traced.headers["X-Request-Id"]]
    assert traced.headers["X-Request-Id"].startswith("trace-abc.") and alias["account_id"] == served["account_id"]
    assert (alias["model_requested"], alias["model_served"], alias["fallback_layer"]) == ("fast", "llama-3.3-70b", 0)
    assert requests_logged[wrong_key.headers["X-Request-Id"]]["model_requested"] == "kimi-k2.5"
    assert requests_logged[unrouted.headers["X-Request-Id"]]["account_id"] is None
    codes = {rid: requests_logged[rid].get("error_code") for rid in sent}
    assert codes == {ok.headers["X-Request-Id"]: None, stream.headers["X-Request-Id"]: None,
                     traced.headers["X-Request-Id"]: None, missing.headers["X-Request-Id"]: "model_not_found",
                     wrong_key.headers["X-Request-Id"]: "invalid_api_key", unrouted.headers["X-Request-Id"]: "not_found"}
    assert "error_code" not in served  # only a failure carries one
    for secret in (reg["api_key"], reg["session_token"], login["session_token"], password):
        assert secret not in text
    assert not re.search(r"k[ys]-[A-Za-z0-9]{8,}", text)


def test_the_formatter_keeps_fields_and_tracebacks():
    record = logging.LogRecord("kyma.x", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    record.fields = {"request_id": "r1"}
    try:
        raise ValueError("inner")
    except ValueError:
        import sys
        record.exc_info = sys.exc_info()
    line = json.loads(logs.JsonFormatter().format(record))
    assert (line["level"], line["message"], line["request_id"]) == ("ERROR", "boom now", "r1")
    assert "ValueError: inner" in line["traceback"] and line["time"].endswith("Z")


def test_an_unknown_format_is_refused_at_start():
    with pytest.raises(ValueError, match="KYMA_LOG_FORMAT"):
        logs.configure("INFO", "xml")
