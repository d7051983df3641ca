"""What the gateway forwards upstream from a client's chat request."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kyma.chat.admission import affordable_max_tokens
from kyma.chat.request import parse_chat_request
from kyma.config import DATA
from kyma.errors import InvalidRequest
from kyma.services.catalog import Catalog
from kyma.services.pricing import worst_case_micros

CATALOG = Catalog.load(DATA / "catalog.json")

HELLO = [{"role": "user", "content": "hi"}]


def test_one_token_limit_goes_upstream_the_one_the_hold_covers():
    req = parse_chat_request({"model": "m", "messages": HELLO, "max_tokens": 5000, "max_completion_tokens": 100})
    assert req.max_tokens == 100
    assert req.upstream_body["max_tokens"] == 100 and "max_completion_tokens" not in req.upstream_body


def test_fields_that_would_steer_the_upstream_call_are_dropped():
    body = {"model": "m", "messages": HELLO, "api_base": "http://evil.example", "base_url": "http://x",
            "api_key": "sk-other", "plugins": [{"id": "web"}], "provider": {"order": ["a"]}, "seed": 7}
    forwarded = parse_chat_request(body).upstream_body
    assert not {"api_base", "base_url", "api_key", "plugins", "provider"} & set(forwarded)
    assert forwarded["seed"] == 7, "ordinary OpenAI fields pass through"


def test_fault_injection_header_reaches_simulated_providers_only():
    from types import SimpleNamespace

    from kyma.chat.call import ChatCall, Prepared
    from kyma.providers.routes import Provider, Route

    prep = Prepared(ChatCall("chat", sim_fault="*=503"), *[None] * 8)
    simulated = Route("m", Provider("sim-alpha", "http://127.0.0.1:1/v1", simulated=True), "m")
    real = Route("m", Provider("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"), "m")
    assert prep.upstream_headers(SimpleNamespace(route=simulated)) == {"X-Sim-Fault": "*=503"}
    assert prep.upstream_headers(SimpleNamespace(route=real)) == {}



@given(st.lists(st.sampled_from(range(16)), min_size=1, max_size=5, unique=True),
       st.integers(0, 200_000), st.integers(0, 2_000_000))
def test_affordable_max_tokens_is_the_largest_hold_that_fits(picks, prompt_tokens, available):
    models = [CATALOG.models[i] for i in picks]
    n = affordable_max_tokens(models, prompt_tokens, available)

    def hold(k):
        return max(worst_case_micros(m, prompt_tokens, k) for m in models)

    assert n == 0 or hold(n) <= available
    assert hold(n + 1) > available


def test_up_to_sixteen_stop_strings_pass_through():
    stops = [f"<|s{i}|>" for i in range(6)]  # what Continue sends for autocomplete
    assert parse_chat_request({"model": "m", "messages": HELLO, "stop": stops}).upstream_body["stop"] == stops
    with pytest.raises(InvalidRequest):
        parse_chat_request({"model": "m", "messages": HELLO, "stop": [f"s{i}" for i in range(17)]})
