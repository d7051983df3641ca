"""The catalog data file and GET /v1/models, /v1/models/{id}: every filter, good and bad input."""

from __future__ import annotations

import json

import pytest

from kyma.config import DATA
from kyma.services.catalog import Catalog, load_claude_models
from kyma.translate.anthropic import map_claude_model

SEED_MODEL_FIELDS = (
    "id", "name", "description", "context_window", "max_output_tokens", "best_for", "speed", "recommended",
    "hot", "input_modalities", "output_modalities", "supported_parameters", "supports_tools", "supports_vision",
    "supports_reasoning", "supports_structured_outputs", "latency_tier", "cost_tier", "quality_tier",
    "release_stage", "recommended_for", "pricing", "gateway_output_limit", "max_tokens_passthrough",
)
REASONING = {"deepseek-r1", "qwen-3.6-plus", "kimi-k2.5", "glm-5.1", "minimax-m2.5", "minimax-m2.7",
             "gemini-2.5-flash", "gemini-3-flash", "gpt-oss-120b"}
VISION = {"gemma-4-31b", "gemini-2.5-flash", "gemini-3-flash", "kimi-k2.5"}
CHEAP = {"glm-4.7-flash", "gemma-4-31b", "gpt-oss-120b", "glm-4.5-air"}
PREMIUM = {"qwen-3.6-plus", "qwen-3-coder", "deepseek-r1", "kimi-k2.5", "glm-5.1", "gemini-3-flash"}


def ids(resp) -> set[str]:
    assert resp.status_code == 200, resp.get_json()
    return {m["id"] for m in resp.get_json()["data"]}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(DATA / "catalog.json")


def test_catalog_has_the_16_models_with_every_seed_field(catalog):
    assert len(catalog.models) == 16
    assert catalog.default_model == "qwen-3.6-plus"
    for m in catalog.models:
        missing = [f for f in SEED_MODEL_FIELDS + ("supports_caching", "family", "object", "owned_by", "created")
                   if f not in m.api]
        assert not missing, (m.id, missing)
        assert m.api["gateway_output_limit"] is None and m.api["max_tokens_passthrough"] is True
        assert m.pricing.cached_input_per_1m == pytest.approx(m.pricing.input_per_1m * 0.1)


def test_catalog_facts_follow_the_spec(catalog):
    by_id = {m.id: m for m in catalog.models}
    assert [m.id for m in catalog.models if not m.supports_tools] == ["deepseek-r1"]
    assert {m.id for m in catalog.models if m.supports_reasoning} == REASONING
    assert {m.id for m in catalog.models if m.supports_vision} == VISION
    assert {m.id for m in catalog.models if m.cost_tier == "cheap"} == CHEAP
    assert {m.id for m in catalog.models if m.cost_tier == "premium"} == PREMIUM
    assert (by_id["glm-5.1"].context_window, by_id["glm-5.1"].max_output_tokens) == (203776, 65536)
    assert (by_id["llama-3.3-70b"].pricing.input_per_1m, by_id["llama-3.3-70b"].pricing.output_per_1m) == (1.19, 1.19)
    assert catalog.aliases["long-context"] == "gemini-2.5-flash" and catalog.aliases["code"] == "kimi-k2.5"


def test_claude_names_map_to_catalog_models(catalog):
    mapping = load_claude_models(DATA / "claude_models.json")
    known = {m.id for m in catalog.models}
    assert set(mapping.values()) <= known
    assert map_claude_model("claude-opus-4-1", mapping, catalog) == "qwen-3.6-plus"
    assert map_claude_model("claude-sonnet-4-5-20250929", mapping, catalog) == "kimi-k2.5"  # dated name → prefix
    assert map_claude_model("claude-3-5-haiku-20241022", mapping, catalog) == "glm-4.7-flash"
    assert map_claude_model("claude-something-new", mapping, catalog) == mapping["default"]


def test_list_models_is_the_openai_list_shape_with_aliases(client):
    body = client.get("/v1/models").get_json()
    assert body["object"] == "list" and len(body["data"]) == 16
    assert body["aliases"]["best"] == "qwen-3.6-plus"
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in body["data"])


@pytest.mark.parametrize("query, expected", [
    ("tools=false", {"deepseek-r1"}),
    ("vision=true", VISION),
    ("reasoning=1", REASONING),
    ("structured_outputs=false", {"deepseek-r1"}),
    ("cost_tier=cheap", CHEAP),
    ("cost_tier=premium", PREMIUM),
    ("min_context_window=1000000", {"gemini-2.5-flash", "gemini-3-flash"}),
    ("max_input_price=0.19", {"glm-4.7-flash", "glm-4.5-air", "gemma-4-31b"}),
    ("recommended_for=math", {"deepseek-r1"}),
    ("recommended_for=math,vision", {"deepseek-r1"} | VISION),
    ("vision=true&cost_tier=cheap", {"gemma-4-31b"}),
    ("latency_tier=slow", {"deepseek-r1", "glm-5.1"}),
])
def test_filters(client, query, expected):
    assert ids(client.get(f"/v1/models?{query}")) == expected


def test_tier_filters_partition_the_catalog(client):
    for name, values in (("latency_tier", ("fast", "medium", "slow")),
                         ("quality_tier", ("efficient", "strong", "frontier-open"))):
        seen = [ids(client.get(f"/v1/models?{name}={v}")) for v in values]
        assert all(seen) and sum(map(len, seen)) == 16 and set().union(*seen) == ids(client.get("/v1/models"))


def test_empty_filters_are_ignored(client):
    assert len(ids(client.get("/v1/models?tools=&recommended_for=&min_context_window="))) == 16


@pytest.mark.parametrize("query, param", [
    ("tools=maybe", "tools"), ("vision=2", "vision"), ("reasoning=yes please", "reasoning"),
    ("structured_outputs=x", "structured_outputs"), ("cost_tier=free", "cost_tier"),
    ("latency_tier=instant", "latency_tier"), ("quality_tier=best", "quality_tier"),
    ("min_context_window=abc", "min_context_window"), ("min_context_window=1.5", "min_context_window"),
    ("max_input_price=cheap", "max_input_price"), ("max_input_price=nan", "max_input_price"),
    ("recommended_for=coding,gaming", "recommended_for"),
])
def test_bad_filter_values_are_a_400_naming_the_parameter(client, query, param):
    resp = client.get(f"/v1/models?{query}")
    assert resp.status_code == 400
    err = resp.get_json()["error"]
    assert err["param"] == param and param in err["message"] and err["type"] == "invalid_request_error"


def test_get_model_by_id_and_alias(client):
    body = client.get("/v1/models/deepseek-v3").get_json()
    assert body["id"] == "deepseek-v3" and body["pricing"]["cached_input_per_1m"] == pytest.approx(0.081)
    alias = client.get("/v1/models/vision").get_json()
    assert alias["id"] == "gemma-4-31b" and alias["alias"] == "vision"


def test_unknown_model_is_a_404_model_not_found(client):
    resp = client.get("/v1/models/gpt-17")
    assert resp.status_code == 404
    err = resp.get_json()["error"]
    assert (err["type"], err["code"]) == ("invalid_request_error", "model_not_found") and "gpt-17" in err["message"]


def test_discovery_paths_are_not_shadowed_by_the_model_route(client):
    assert client.get("/v1/models/recommend").get_json()["object"] == "recommendation"
    assert client.get("/v1/models/uptime").get_json()["window_days"] == 7


def test_catalog_file_is_plain_json_an_operator_can_edit():
    data = json.loads((DATA / "catalog.json").read_text())
    assert set(data) == {"default_model", "aliases", "models"}


@pytest.mark.parametrize("price, problem", [(0.0000000001, "at most 9 decimals"), (-1, "non-negative"),
                                            (float("nan"), "non-negative"), (float("inf"), "non-negative")])
def test_a_price_that_cannot_be_costed_exactly_is_refused_when_the_catalog_loads(tmp_path, price, problem):
    data = json.loads((DATA / "catalog.json").read_text())
    data["models"][2]["pricing"]["output_per_1m"] = price
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=problem) as refused:
        Catalog.load(path)
    assert repr(data["models"][2]["id"]) in str(refused.value)  # names the model to fix


@pytest.mark.integration
@pytest.mark.no_database  # the catalog is a file: no query reaches storage
def test_openai_sdk_lists_and_retrieves_models_from_a_gunicorn_gateway(gateway):
    from openai import NotFoundError, OpenAI

    sdk = OpenAI(base_url=f"{gateway.url}/v1", api_key="ky-not-needed-for-the-catalog", max_retries=0)
    listed = [m.id for m in sdk.models.list()]
    assert len(listed) == 16 and listed[0] == "qwen-3.6-plus"
    model = sdk.models.retrieve("reasoning")
    assert model.id == "deepseek-r1" and model.owned_by == "deepseek"
    with pytest.raises(NotFoundError) as exc:
        sdk.models.retrieve("no-such-model")
    assert exc.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("base_url", ["http://", "http://:8080/v1", "ftp://example.com/v1", "example.com/v1"])
def test_a_route_base_url_without_a_host_or_http_is_refused_when_the_routes_load(tmp_path, catalog, base_url):
    from kyma.providers.routes import RouteTable

    data = json.loads((DATA / "routes.json").read_text())
    data["providers"]["together"]["base_url"] = base_url
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="provider 'together'"):
        RouteTable.load(path, catalog)
