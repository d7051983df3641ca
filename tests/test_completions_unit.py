"""Legacy completions without processes: validation, the chat-shape round trip, route flags, plans, the simulator."""

from __future__ import annotations

import pytest

from kyma.chat.apis import check_model
from kyma.chat.completion_request import parse_completion_request
from kyma.chat.plan import missing_capability, plan
from kyma.config import DATA
from kyma.errors import InvalidRequest
from kyma.providers.routes import RouteTable
from kyma.services.catalog import Catalog
from kyma.translate.completions import chat_chunk_from_legacy, chat_reply_from_legacy, legacy_chunk, legacy_reply


@pytest.fixture(scope="module")
def catalog():
    return Catalog.load(DATA / "catalog.json")


def test_a_prompt_and_a_suffix_are_counted_and_forwarded():
    req = parse_completion_request({"model": "qwen-3-coder", "prompt": ["def f():"], "suffix": "return 1",
                                    "max_tokens": 32, "stop": ["\n\n"], "models": ["qwen-3-coder", "deepseek-v3"],
                                    "provider": {"order": ["sim-beta"]}, "stream": True,
                                    "stream_options": {"include_usage": True}})
    assert (req.api, req.max_tokens, req.stream, req.client_wants_usage) == ("completions", 32, True, True)
    assert req.needs.fim and req.input_tokens > 0 and req.fallback_models == ("deepseek-v3",)
    assert req.upstream_body["prompt"] == "def f():" and req.upstream_body["suffix"] == "return 1"
    assert "models" not in req.upstream_body and "provider" not in req.upstream_body
    plain = parse_completion_request({"model": "m", "prompt": "", "suffix": ""})
    assert not plain.needs.fim and "suffix" not in plain.upstream_body


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x"}, "model"),
    ({"model": "m"}, "prompt"),
    ({"model": "m", "prompt": ["a", "b"]}, "prompt"),
    ({"model": "m", "prompt": [1, 2]}, "prompt"),
    ({"model": "m", "prompt": "x", "suffix": 3}, "suffix"),
    ({"model": "m", "prompt": "x", "n": 2}, "n"),
    ({"model": "m", "prompt": "x", "best_of": 3}, "best_of"),
    ({"model": "m", "prompt": "x", "echo": True}, "echo"),
    ({"model": "m", "prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"model": "m", "prompt": "x", "temperature": 3}, "temperature"),
    ({"model": "m", "prompt": "x", "stop": [1]}, "stop"),
    ({"model": "m", "prompt": "x", "stream": "yes"}, "stream"),
])
def test_bad_requests_name_the_param(body, param):
    with pytest.raises(InvalidRequest) as err:
        parse_completion_request(body)
    assert err.value.param == param


def test_fill_in_the_middle_needs_a_model_the_catalog_says_has_it(catalog):
    needs = parse_completion_request({"model": "m", "prompt": "a", "suffix": "b"}).needs
    assert missing_capability(catalog.get("qwen-3-coder"), needs) is None
    assert missing_capability(catalog.get("llama-3.3-70b"), needs) == "fill-in-the-middle (suffix)"


def test_only_routes_flagged_for_completions_serve_them(catalog):
    table = RouteTable.load(DATA / "routes.json", catalog, environ={"GROQ_API_KEY": "k", "DEEPINFRA_API_KEY": "k"})
    req = parse_completion_request({"model": "qwen-3-32b", "prompt": "a"})
    model = catalog.get("qwen-3-32b")
    assert [r.provider.name for r in table.routes_for("qwen-3-32b")] == ["groq", "deepinfra"]
    own = [c for c in plan(catalog, table, model, req, 1) if c.model.id == model.id]
    assert [c.route.provider.name for c in own] == ["deepinfra"]  # Groq serves no legacy completions
    only_groq = RouteTable.load(DATA / "routes.json", catalog, environ={"GROQ_API_KEY": "k"})
    with pytest.raises(InvalidRequest) as err:
        check_model(catalog.get("llama-3.3-70b"), req, only_groq.routes_for("llama-3.3-70b"))
    assert err.value.code == "completions_unsupported"
    sims = RouteTable.load(DATA / "routes.json", catalog, environ={})
    assert all(r.completions for r in sims.routes_for("qwen-3-32b"))


def test_upstream_text_completions_read_as_chat_shapes_and_back():
    upstream = {"id": "cmpl-1", "object": "text_completion", "model": "m", "created": 5,
                "choices": [{"text": "hi", "index": 0, "finish_reason": "length", "logprobs": None}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    as_chat = chat_reply_from_legacy(upstream)
    assert as_chat["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                   "finish_reason": "length"}]
    back = legacy_reply(dict(as_chat, usage={"cost": 1}), "cmpl-x")
    assert back["object"] == "text_completion" and back["id"] == "cmpl-x" and back["usage"] == {"cost": 1}
    assert back["choices"] == [{"text": "hi", "index": 0, "logprobs": None, "finish_reason": "length"}]
    with pytest.raises(ValueError):
        chat_reply_from_legacy({"choices": [{"message": {}}]})


def test_stream_chunks_read_as_deltas_and_back():
    chunk = chat_chunk_from_legacy({"id": "x", "choices": [{"text": "ab", "index": 0, "finish_reason": None}]})
    assert chunk["choices"] == [{"index": 0, "delta": {"content": "ab"}, "finish_reason": None}]
    assert chat_chunk_from_legacy({"choices": [{"text": "", "finish_reason": "stop"}]})["choices"][0]["delta"] == {}
    out = legacy_chunk({"id": "chatcmpl-1", "model": "m", "created": 1,
                        "choices": [{"index": 0, "delta": {"content": "ab"}, "finish_reason": None}]}, "cmpl-1")
    assert out == {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                   "choices": [{"text": "ab", "index": 0, "logprobs": None, "finish_reason": None}]}
    assert legacy_chunk({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}, "c") is None
    final = legacy_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"cost": 0}}, "c")
    assert final["choices"][0]["finish_reason"] == "stop" and final["usage"] == {"cost": 0}
    usage_only = legacy_chunk({"choices": [], "usage": {"cost": 0}}, "c")
    assert usage_only["choices"] == [] and usage_only["usage"] == {"cost": 0}


def test_the_simulator_completes_a_prompt_and_fills_in_a_middle():
    from kyma.sim.app import create_sim_app

    client = create_sim_app({"KYMA_SIM_NAME": "sim-x"}).test_client()
    plain = client.post("/v1/completions", json={"model": "m", "prompt": "say exactly: one two"}).get_json()
    assert plain["object"] == "text_completion" and plain["choices"][0]["text"] == "one two"
    fim = client.post("/v1/completions", json={"model": "m", "prompt": "def add(a, b):", "suffix": "\nprint(1)"})
    assert fim.get_json()["choices"][0]["text"] == "/* filled in between 'b):' and 'print(1)' */"
    streamed = client.post("/v1/completions", json={"model": "m", "prompt": "count to 5", "stream": True})
    text = streamed.get_data(as_text=True)
    assert '"object":"text_completion"' in text and text.endswith("data: [DONE]\n\n")
    assert client.post("/v1/completions", json={"model": "m", "prompt": 3}).status_code == 400
