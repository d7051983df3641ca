"""POST /v1/completions end to end: the real openai SDK → gunicorn gateway → simulated providers."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from tests.accounts import balance
from tests.servers import db_rows

pytestmark = pytest.mark.integration


def _post(gateway, account, body, **headers):
    return requests.post(f"{gateway.url}/v1/completions", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {account['api_key']}", **headers})


def _log(gateway, request_id):
    return db_rows(gateway.env, "select endpoint, status, model_served, stream, prompt_tokens, completion_tokens, "
                   "cost_micros from requestlog where request_id={p}", request_id)[0]


def test_plain_completion_with_usage_cost_and_its_log_row(oai, gateway, account):
    before = balance(gateway, account)
    raw = oai.completions.with_raw_response.create(model="qwen-3-coder", prompt="say exactly: hello world",
                                                   max_tokens=20)
    resp = raw.parse()
    assert resp.object == "text_completion" and resp.model == "qwen-3-coder" and resp.id.startswith("cmpl-")
    assert resp.choices[0].text == "hello world" and resp.choices[0].finish_reason == "stop"
    usage = resp.usage.model_dump()
    price = requests.get(f"{gateway.url}/v1/models/qwen-3-coder", timeout=5).json()["pricing"]
    expected = (usage["prompt_tokens"] * price["input_per_1m"] + usage["completion_tokens"] * price["output_per_1m"]) / 1e6
    assert usage["cost"] == pytest.approx(expected, abs=1e-6) and usage["cost"] > 0
    assert before - balance(gateway, account) == pytest.approx(usage["cost"], abs=1e-9)
    assert raw.headers["X-Kyma-Model"] == "qwen-3-coder"
    endpoint, status, served, stream, prompt, completion, cost = _log(gateway, raw.headers["X-Request-Id"])
    assert (endpoint, status, served, bool(stream)) == ("completions", 200, "qwen-3-coder", False)
    assert (prompt, completion, cost) == (usage["prompt_tokens"], usage["completion_tokens"], round(usage["cost"] * 1e6))


def test_streamed_completion_in_the_legacy_chunk_shape(oai, gateway, account):
    chunks = list(oai.completions.create(model="deepseek-v3", prompt="count to 12", max_tokens=100, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == " ".join(str(i) for i in range(1, 13))
    assert all(c.object == "text_completion" for c in chunks) and len({c.id for c in chunks}) == 1
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage.model_dump()["cost"] > 0
    r = _post(gateway, account, {"model": "deepseek-v3", "prompt": "say exactly: a b c", "stream": True,
                                 "stream_options": {"include_usage": True}})
    events = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert parsed[-1]["choices"] == [] and parsed[-1]["usage"]["total_tokens"] > 0
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert "".join(p["choices"][0]["text"] for p in parsed[:-1]) == "a b c"
    endpoint, status, served, stream, *_ = _log(gateway, r.headers["X-Request-Id"])
    assert (endpoint, status, served, bool(stream)) == ("completions", 200, "deepseek-v3", True)


def test_suffix_fills_in_the_middle_on_a_model_that_has_it(oai, gateway, account):
    resp = oai.completions.create(model="qwen-3-coder", prompt="def add(a, b):\n    ", suffix="\nprint(add(1, 2))",
                                  max_tokens=64)
    assert resp.choices[0].text == "/* filled in between 'b):' and 'print(add(1,' */"
    with pytest.raises(openai.BadRequestError) as err:
        oai.completions.create(model="llama-3.3-70b", prompt="def f():", suffix="return 1")
    assert err.value.body["code"] == "unsupported_feature" and err.value.body["param"] == "suffix"


def test_a_failing_provider_falls_back_and_a_bad_prompt_is_400(gateway, account):
    r = _post(gateway, account, {"model": "glm-4.5-air", "prompt": "say exactly: ok"},
              **{"X-Kyma-Sim-Fault": "sim-alpha=500"})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "ok"
    assert r.headers["X-Kyma-Provider"] == "sim-beta" and r.headers["X-Kyma-Fallback-Layer"] == "1"
    bad = _post(gateway, account, {"model": "glm-4.5-air", "prompt": ["a", "b"]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt"
    assert _log(gateway, bad.headers["X-Request-Id"])[:2] == ("completions", 400)
