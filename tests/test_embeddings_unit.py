"""Embeddings without processes: request validation, vector shaping, the catalog's kinds, plans, the simulator."""

from __future__ import annotations

import base64
import math
import struct

import pytest

from kyma.chat.apis import check_model
from kyma.chat.embedding_request import parse_embedding_request
from kyma.chat.plan import plan
from kyma.config import DATA
from kyma.errors import InvalidRequest
from kyma.providers.routes import RouteTable
from kyma.services.catalog import Catalog, ModelFilter, filter_models
from kyma.translate.embeddings import embedding_list, truncated, upstream_vectors


@pytest.fixture(scope="module")
def catalog():
    return Catalog.load(DATA / "catalog.json")


@pytest.fixture(scope="module")
def table(catalog):
    return RouteTable.load(DATA / "routes.json", catalog, environ={})


def _norm(v):
    return math.sqrt(sum(x * x for x in v))


@pytest.mark.parametrize("value, tokens, longest", [
    ("hello world", 2, 2),
    (["hello", "big wide world"], 4, 3),
    ([1, 2, 3], 3, 3),
    ([[1, 2], [3, 4, 5, 6]], 6, 4),
])
def test_every_input_form_is_counted(value, tokens, longest):
    req = parse_embedding_request({"model": "bge-m3", "input": value})
    assert (req.api, req.input_tokens, req.longest_input, req.stream) == ("embeddings", tokens, longest, False)
    assert req.upstream_body["input"] == value and req.upstream_body["encoding_format"] == "float"


@pytest.mark.parametrize("body, param", [
    ({"input": "x"}, "model"),
    ({"model": "bge-m3"}, "input"),
    ({"model": "bge-m3", "input": ""}, "input[0]"),
    ({"model": "bge-m3", "input": []}, "input"),
    ({"model": "bge-m3", "input": ["a", ""]}, "input[1]"),
    ({"model": "bge-m3", "input": ["a", [1, 2]]}, "input"),
    ({"model": "bge-m3", "input": [[1, -2]]}, "input[0]"),
    ({"model": "bge-m3", "input": [True]}, "input[0]"),
    ({"model": "bge-m3", "input": ["a"] * 2049}, "input"),
    ({"model": "bge-m3", "input": "a", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "bge-m3", "input": "a", "dimensions": 0}, "dimensions"),
    ({"model": "bge-m3", "input": "a", "dimensions": "64"}, "dimensions"),
    ({"model": "bge-m3", "input": "a", "stream": True}, "stream"),
])
def test_bad_requests_name_the_param(body, param):
    with pytest.raises(InvalidRequest) as err:
        parse_embedding_request(body)
    assert err.value.param == param


def test_dimensions_and_encoding_are_the_gateways_not_the_upstreams():
    req = parse_embedding_request({"model": "m", "input": "a", "dimensions": 64, "encoding_format": "base64",
                                   "provider": {"order": ["x"]}, "user": "u", "stream": False})
    assert req.dimensions == 64
    assert req.upstream_body == {"model": "m", "input": "a", "user": "u", "encoding_format": "float"}


def test_dimensions_need_a_truncatable_model_and_a_length_it_has(catalog, table):
    def check(model_id, dims):
        model = catalog.get(model_id)
        req = parse_embedding_request({"model": model_id, "input": "a", "dimensions": dims})
        check_model(model, req, table.routes_for(model_id))

    check("qwen3-embedding-8b", 256)
    check("bge-m3", 1024)  # its own length is no truncation
    with pytest.raises(InvalidRequest) as err:
        check("bge-m3", 256)
    assert err.value.code == "dimensions_unsupported" and err.value.status == 400
    for dims in (16, 4097):
        with pytest.raises(InvalidRequest) as err:
            check("qwen3-embedding-8b", dims)
        assert err.value.param == "dimensions"


def test_the_kinds_are_kept_apart(catalog, table):
    chat_req = parse_embedding_request({"model": "qwen-3-coder", "input": "a"})
    with pytest.raises(InvalidRequest) as err:
        check_model(catalog.get("qwen-3-coder"), chat_req, table.routes_for("qwen-3-coder"))
    assert err.value.code == "model_not_embedding"
    from kyma.chat.request import parse_chat_request

    req = parse_chat_request({"model": "bge-m3", "messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(InvalidRequest) as err:
        check_model(catalog.get("bge-m3"), req, table.routes_for("bge-m3"))
    assert err.value.code == "model_not_chat" and err.value.param == "model"


def test_catalog_models_are_chat_models_and_embeddings_are_listed_apart(catalog):
    assert len(catalog.models) == 16 and all(m.kind == "chat" and m.api["kind"] == "chat" for m in catalog.models)
    assert {m.id: m.dimensions for m in catalog.embeddings} == {
        "bge-m3": 1024, "qwen3-embedding-8b": 4096, "nomic-embed-text-v1.5": 768}
    assert all(m.api["kind"] == "embedding" and m.pricing.input_per_1m > 0 for m in catalog.embeddings)
    assert catalog.get("bge-m3").kind == "embedding"
    assert [m.id for m in filter_models(catalog, ModelFilter(kind="embedding"))] == [m.id for m in catalog.embeddings]
    assert len(filter_models(catalog, ModelFilter())) == 16
    assert len(filter_models(catalog, ModelFilter(kind=None))) == 19


def test_embeddings_plan_only_the_models_own_routes(catalog, table):
    model = catalog.get("bge-m3")
    req = parse_embedding_request({"model": "bge-m3", "input": "a"})
    cands = plan(catalog, table, model, req, 1)
    assert [c.model.id for c in cands] == ["bge-m3"] * 3 and [c.layer for c in cands] == [0, 1, 1]
    assert all(c.route.provider.simulated for c in cands)  # no provider key set
    assert plan(catalog, table, model, req, 8192) == []  # an input past the window


def test_real_embedding_routes_are_used_when_their_key_is_set(catalog):
    table = RouteTable.load(DATA / "routes.json", catalog, environ={"DEEPINFRA_API_KEY": "k"})
    assert [(r.provider.name, r.upstream_model) for r in table.routes_for("bge-m3")] == [("deepinfra", "BAAI/bge-m3")]


def test_a_chat_request_never_falls_back_to_an_embedding_model(catalog, table):
    from kyma.chat.request import parse_chat_request

    req = parse_chat_request({"model": "glm-4.7-flash", "models": ["glm-4.7-flash", "bge-m3"],
                              "messages": [{"role": "user", "content": "hi"}]})
    assert "bge-m3" not in {c.model.id for c in plan(catalog, table, catalog.get("glm-4.7-flash"), req, 10)}


def test_truncation_renormalises_and_base64_is_little_endian_float32():
    v = [3.0, 4.0, 12.0]
    assert truncated(v, 2) == [0.6, 0.8] and truncated(v, None) is v and truncated(v, 5) is v
    out = embedding_list([[0.6, 0.8]], "m", {"prompt_tokens": 1}, dimensions=None, encoding_format="base64")
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == pytest.approx((0.6, 0.8))
    assert out["object"] == "list" and out["data"][0]["object"] == "embedding" and out["model"] == "m"


def test_upstream_vectors_are_read_in_index_order_from_floats_or_base64():
    b64 = base64.b64encode(struct.pack("<2f", 0.5, 0.25)).decode()
    body = {"data": [{"index": 1, "embedding": b64}, {"index": 0, "embedding": [1, 0]}]}
    assert upstream_vectors(body) == [[1.0, 0.0], [0.5, 0.25]]
    for bad in ({}, {"data": []}, {"data": [{"embedding": "x"}]}, {"data": [{"embedding": [1, "a"]}]},
                {"data": [{"index": 3, "embedding": [1.0]}]}, {"data": [{"embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}):
        with pytest.raises(ValueError):
            upstream_vectors(bad)


def test_the_simulator_embeds_deterministically_at_the_catalog_dimensions():
    from kyma.sim.app import create_sim_app

    client = create_sim_app({"KYMA_SIM_NAME": "sim-x"}).test_client()
    one = client.post("/v1/embeddings", json={"model": "nomic-embed-text-v1.5", "input": ["cat", "dog"]}).get_json()
    again = client.post("/v1/embeddings", json={"model": "nomic-embed-text-v1.5", "input": "cat"}).get_json()
    a, b = (d["embedding"] for d in one["data"])
    assert len(a) == 768 and _norm(a) == pytest.approx(1.0) and a != b
    assert again["data"][0]["embedding"] == a
    assert one["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    small = client.post("/v1/embeddings", json={"model": "nomic-embed-text-v1.5", "input": "cat", "dimensions": 64,
                                                "encoding_format": "base64"}).get_json()["data"][0]["embedding"]
    assert struct.unpack("<64f", base64.b64decode(small)) == pytest.approx(truncated(a, 64), abs=1e-6)
    assert client.post("/v1/embeddings", json={"model": "bge-m3", "input": ""}).status_code == 400
    assert client.post("/v1/embeddings", json={"model": "bge-m3", "input": "x"},
                       headers={"X-Sim-Fault": "503"}).status_code == 503
