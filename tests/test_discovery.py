"""Discovery endpoints: recommend, config, capabilities, pricing, status, uptime, /llms.txt, /healthz."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kyma.models import RequestLog, RouteOutcome, utcnow
from kyma.services.recommend import AGENT_IDS

ORIGIN = "http://gw.example:8080"


def get(client, url, status=200):
    resp = client.get(url, base_url=ORIGIN)
    assert resp.status_code == status, resp.get_data(as_text=True)
    return resp


@pytest.mark.parametrize("agent", AGENT_IDS)
def test_recommend_for_every_agent_gives_a_tool_capable_model_and_a_config_for_this_origin(client, agent):
    body = get(client, f"/v1/models/recommend?agent={agent}").get_json()
    assert body["agent"] == agent and body["model_info"]["supports_tools"] is True
    assert body["reason"] and body["alternatives"]
    assert all(a["id"] != body["model"] for a in body["alternatives"])
    expected_base = ORIGIN if agent == "claude-code" else f"{ORIGIN}/v1"
    assert body["config"]["base_url"] == expected_base
    assert expected_base in body["config"]["snippet"] and body["model"] in body["config"]["snippet"]


def test_claude_code_config_uses_the_root_url_not_v1(client):
    env = get(client, "/v1/models/recommend?agent=claude-code").get_json()["config"]["settings"]["env"]
    assert env["ANTHROPIC_BASE_URL"] == ORIGIN


@pytest.mark.parametrize("param", ["usecase", "for"])
def test_recommend_by_usecase(client, param):
    assert get(client, f"/v1/models/recommend?{param}=reasoning").get_json()["model"] == "deepseek-r1"
    assert get(client, f"/v1/models/recommend?{param}=vision").get_json()["model"] == "gemma-4-31b"
    assert get(client, f"/v1/models/recommend?{param}=math").get_json()["model"] == "deepseek-r1"


def test_recommend_without_arguments_picks_the_best_general_model(client):
    body = get(client, "/v1/models/recommend").get_json()
    assert (body["usecase"], body["model"], body["agent"]) == ("general", "qwen-3.6-plus", None)


@pytest.mark.parametrize("query, param, valid", [
    ("agent=vscode", "agent", "claude-code"), ("usecase=gaming", "usecase", "long-context"),
    ("for=gaming", "usecase", "coding"),
])
def test_recommend_rejects_unknown_values_listing_the_valid_ones(client, query, param, valid):
    err = get(client, f"/v1/models/recommend?{query}", 400).get_json()["error"]
    assert err["param"] == param and valid in err["message"]


def test_config_has_base_urls_from_the_request_origin(client):
    body = get(client, "/v1/config").get_json()
    assert body["base_url"] == f"{ORIGIN}/v1" and body["anthropic_base_url"] == ORIGIN
    assert body["default_model"] == "qwen-3.6-plus" and body["aliases"]["cheap"] == "glm-4.7-flash"
    assert body["auth"]["scheme"] == "Bearer" and "x-api-key" in body["auth"].values()
    assert {"method": "POST", "path": "/v1/chat/completions"}.items() <= body["endpoints"][0].items()
    assert len(body["models"]) == 16


def test_capabilities_list_models_per_feature(client):
    features = get(client, "/v1/capabilities").get_json()["features"]
    assert "deepseek-r1" not in features["tools"]["models"] and len(features["tools"]["models"]) == 15
    assert set(features["vision"]["models"]) == {"gemma-4-31b", "gemini-2.5-flash", "gemini-3-flash", "kimi-k2.5"}
    assert features["anthropic_messages"]["supported"] is True
    assert [layer["layer"] for layer in features["fallback"]["layers"]] == [1, 2, 3]


@pytest.mark.parametrize("path", ["/v1/pricing", "/v1/credits/pricing"])
def test_pricing_catalog_sorted_by_id_and_cacheable(client, path):
    resp = get(client, path)
    body = resp.get_json()
    assert resp.headers["Cache-Control"] == "public, max-age=60"
    assert body["object"] == "pricing.catalog" and body["text_count"] == 16 == len(body["text"])
    assert [r["id"] for r in body["text"]] == sorted(r["id"] for r in body["text"])
    row = next(r for r in body["text"] if r["id"] == "glm-5.1")
    assert (row["input_per_1m"], row["output_per_1m"], row["cached_input_per_1m"]) == (1.89, 5.94, 0.189)


def test_uptime_is_null_without_data(client):
    data = get(client, "/v1/models/uptime").get_json()["data"]
    assert len(data) == 16 and all(r["uptime_pct"] is None and r["requests"] == 0 for r in data)


def _outcomes(model, ok, failed, age=timedelta(0)):
    when = utcnow() - age
    for i in range(ok + failed):
        RouteOutcome.create(model=model, provider="sim-alpha", ok=i < ok, status=200 if i < ok else 503,
                            created_at=when)


def test_uptime_counts_recorded_attempts_in_the_last_7_days(app, client):
    with app.app_context():
        _outcomes("kimi-k2.5", ok=3, failed=1)
        _outcomes("kimi-k2.5", ok=0, failed=5, age=timedelta(days=8))  # outside the window
        _outcomes("glm-5.1", ok=2, failed=0, age=timedelta(days=6))
    rows = {r["model"]: r for r in get(client, "/v1/models/uptime").get_json()["data"]}
    assert (rows["kimi-k2.5"]["uptime_pct"], rows["kimi-k2.5"]["requests"], rows["kimi-k2.5"]["errors"]) == (75.0, 4, 1)
    assert rows["glm-5.1"]["uptime_pct"] == 100.0 and rows["glm-5.1"]["last_request_at"].endswith("Z")
    assert rows["deepseek-v3"]["uptime_pct"] is None


def test_uptime_for_one_model_by_alias_and_unknown_model(client):
    data = get(client, "/v1/models/uptime?model=code").get_json()["data"]
    assert [r["model"] for r in data] == ["kimi-k2.5"]
    assert get(client, "/v1/models/uptime?model=nope", 404).get_json()["error"]["code"] == "model_not_found"


def test_status_is_no_data_without_traffic(client):
    body = get(client, "/v1/status").get_json()
    assert body["status"] == "no_data" and {m["status"] for m in body["models"]} == {"no_data"}


def test_status_reflects_recent_traffic(app, client):
    with app.app_context():
        _outcomes("deepseek-v3", ok=10, failed=0)
        _outcomes("glm-5.1", ok=1, failed=9)
        _outcomes("qwen-3-32b", ok=6, failed=4)
        _outcomes("kimi-k2.5", ok=0, failed=9, age=timedelta(hours=2))  # too old for "now"
        for i, status in enumerate((200, 200, 200, 502)):
            RequestLog.create(request_id=f"r{i}", endpoint="chat", status=status)
    body = get(client, "/v1/status").get_json()
    models = {m["id"]: m["status"] for m in body["models"]}
    assert models["deepseek-v3"] == "operational" and models["glm-5.1"] == "outage"
    assert models["qwen-3-32b"] == "degraded" and models["kimi-k2.5"] == "no_data"
    assert (body["requests"], body["server_errors"], body["status"]) == (4, 1, "degraded")


def test_openapi_is_served_as_json(client):
    resp = get(client, "/v1/openapi.json")
    assert resp.mimetype == "application/json" and resp.get_json()["openapi"].startswith("3.")


def test_llms_txt_is_generated_from_the_catalog(client):
    resp = get(client, "/llms.txt")
    text = resp.get_data(as_text=True)
    assert resp.mimetype == "text/plain"
    assert f"{ORIGIN}/v1" in text and "glm-4.7-flash" in text and "- best → qwen-3.6-plus" in text
    assert "/v1/models/recommend" in text


def test_healthz_pings_the_database(client):
    assert get(client, "/healthz").get_json() == {"status": "ok", "database": "ok"}


def test_codex_config_speaks_the_responses_api(client):
    config = get(client, "/v1/models/recommend?agent=codex").get_json()["config"]
    provider = config["settings"]["model_providers"]["kyma"]
    assert (provider["wire_api"], provider["base_url"], provider["env_key"]) == ("responses", f"{ORIGIN}/v1", "KYMA_API_KEY")
    assert config["file"] == "~/.codex/config.toml" and 'wire_api = "responses"' in config["snippet"]


def test_continue_config_covers_chat_autocomplete_and_codebase_indexing(client):
    config = get(client, "/v1/models/recommend?agent=continue").get_json()["config"]
    models = {m["id"]: m for m in get(client, "/v1/models?kind=all").get_json()["data"]}
    roles = config["settings"]
    assert models[roles["autocomplete"]]["supports_fim"] is True  # autocomplete sends a suffix
    assert models[roles["embed"]]["kind"] == "embedding"
    assert f"model: {roles['embed']}" in config["snippet"] and "roles: [autocomplete]" in config["snippet"]
