"""POST /v1/embeddings end to end: the real openai SDK → gunicorn gateway → simulated providers."""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest
import requests

from tests.accounts import balance
from tests.servers import db_rows

pytestmark = pytest.mark.integration

LONG = " ".join(f"word{i} and some more text" for i in range(600))  # a few thousand tokens: a cost in micros


def _post(gateway, account, path, body, **headers):
    return requests.post(f"{gateway.url}/v1{path}", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {account['api_key']}", **headers})


def test_float_vectors_with_dimensions_usage_and_the_exact_charge(oai, gateway, account):
    before = balance(gateway, account)
    raw = oai.embeddings.with_raw_response.create(model="qwen3-embedding-8b", input=[LONG, "short"], dimensions=256,
                                                  encoding_format="float")
    resp = raw.parse()
    assert resp.model == "qwen3-embedding-8b" and len(resp.data) == 2
    assert [len(d.embedding) for d in resp.data] == [256, 256]
    assert all(math.isclose(math.sqrt(sum(x * x for x in d.embedding)), 1.0, rel_tol=1e-6) for d in resp.data)
    usage = resp.usage.model_dump()
    price = requests.get(f"{gateway.url}/v1/models/qwen3-embedding-8b", timeout=5).json()["pricing"]["input_per_1m"]
    assert usage["prompt_tokens"] > 2000 and usage["total_tokens"] == usage["prompt_tokens"]
    assert usage["cost"] == pytest.approx(round(usage["prompt_tokens"] * price / 1e6, 6), abs=1e-9) and usage["cost"] > 0
    assert usage["cached_tokens"] == 0 and usage["cache_discount"] == 0
    assert before - balance(gateway, account) == pytest.approx(usage["cost"], abs=1e-9)
    assert raw.headers["X-Kyma-Model"] == "qwen3-embedding-8b" and raw.headers["X-Kyma-Simulated"] == "true"
    again = oai.embeddings.create(model="qwen3-embedding-8b", input="short", dimensions=256, encoding_format="float")
    assert again.data[0].embedding == resp.data[1].embedding  # deterministic


def test_base64_the_sdk_default_decodes_to_the_float_vectors(oai, gateway, account):
    resp = oai.embeddings.create(model="bge-m3", input=["hello there", "general kenobi"])  # SDK asks for base64
    assert [len(d.embedding) for d in resp.data] == [1024, 1024]
    assert math.isclose(math.sqrt(sum(x * x for x in resp.data[0].embedding)), 1.0, rel_tol=1e-5)
    r = _post(gateway, account, "/embeddings", {"model": "bge-m3", "input": "hello there", "encoding_format": "base64"})
    encoded = r.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    assert list(struct.unpack("<1024f", base64.b64decode(encoded))) == pytest.approx(resp.data[0].embedding)
    floats = _post(gateway, account, "/embeddings", {"model": "bge-m3", "input": "hello there"}).json()
    assert floats["data"][0]["embedding"] == pytest.approx(resp.data[0].embedding, abs=1e-6)


def test_token_arrays_and_a_truncated_base64_vector(oai):
    resp = oai.embeddings.create(model="nomic-embed-text-v1.5", input=[[1, 2, 3], [4, 5]], dimensions=64)
    assert [len(d.embedding) for d in resp.data] == [64, 64] and resp.usage.prompt_tokens == 5


def test_a_dimension_the_model_cannot_give_is_a_400(oai):
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model="bge-m3", input="x", dimensions=256)
    assert err.value.body["code"] == "dimensions_unsupported" and err.value.body["param"] == "dimensions"


def test_a_chat_model_on_embeddings_is_a_400_in_openais_shape(gateway, account):
    r = _post(gateway, account, "/embeddings", {"model": "qwen-3-coder", "input": "x"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "model_not_embedding" and err["type"] == "invalid_request_error" and err["param"] == "model"
    assert "kind=embedding" in err["message"]


def test_an_embedding_model_on_chat_endpoints_is_a_400(oai, gateway, account):
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="bge-m3", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_chat" and err.value.body["type"] == "invalid_request_error"
    r = _post(gateway, account, "/messages", {"model": "bge-m3", "max_tokens": 10,
                                              "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    assert "/v1/embeddings" in r.json()["error"]["message"]
    r = _post(gateway, account, "/completions", {"model": "bge-m3", "prompt": "hi"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_chat"


def test_a_failing_provider_falls_back_to_another_provider_of_the_model(gateway, account):
    r = _post(gateway, account, "/embeddings", {"model": "bge-m3", "input": "x"}, **{"X-Kyma-Sim-Fault": "sim-alpha=503"})
    assert r.status_code == 200, r.text
    assert r.headers["X-Kyma-Provider"] == "sim-beta" and r.headers["X-Kyma-Fallback-Layer"] == "1"
    assert r.json()["model"] == "bge-m3"
    every = _post(gateway, account, "/embeddings", {"model": "bge-m3", "input": "x"}, **{"X-Kyma-Sim-Fault": "503"})
    assert every.status_code == 503  # never another model: its vectors would not compare


def test_the_request_log_has_a_row_for_each(gateway, account):
    ok = _post(gateway, account, "/embeddings", {"model": "bge-m3", "input": ["one", "two words"]})
    bad = _post(gateway, account, "/embeddings", {"model": "qwen-3-coder", "input": "x"})
    rows = {rid: row for rid, *row in db_rows(
        gateway.env, "select request_id, endpoint, status, model_served, prompt_tokens, completion_tokens, provider "
        "from requestlog where request_id in ({p}, {p})", ok.headers["X-Request-Id"], bad.headers["X-Request-Id"])}
    assert rows[ok.headers["X-Request-Id"]] == ["embeddings", 200, "bge-m3", ok.json()["usage"]["prompt_tokens"], 0,
                                                "sim-alpha"]
    assert rows[bad.headers["X-Request-Id"]][:2] == ["embeddings", 400]


def test_models_list_by_kind(gateway):
    default = requests.get(f"{gateway.url}/v1/models", timeout=5).json()["data"]
    embedding = requests.get(f"{gateway.url}/v1/models?kind=embedding", timeout=5).json()["data"]
    every = requests.get(f"{gateway.url}/v1/models?kind=all", timeout=5).json()["data"]
    assert {m["kind"] for m in default} == {"chat"} and len(default) == 16
    assert [m["id"] for m in embedding] == ["bge-m3", "qwen3-embedding-8b", "nomic-embed-text-v1.5"]
    assert all(m["dimensions"] > 0 for m in embedding) and len(every) == 19
    assert requests.get(f"{gateway.url}/v1/models?kind=image", timeout=5).status_code == 400
    assert requests.get(f"{gateway.url}/v1/models/bge-m3", timeout=5).json()["kind"] == "embedding"
