"""What the gateway forwards upstream from a client's chat request."""

from __future__ import annotations

from kyma.services.chat_request import parse_chat_request

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
