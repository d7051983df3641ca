"""`n` > 1 on /v1/chat/completions: one upstream call per choice, merged, each charged and logged."""

from __future__ import annotations

import json

import openai
import pytest

from kyma import chat
from kyma.api.choices import MAX_CHOICES, fan_out_body, merge
from tests.accounts import balance


@pytest.mark.parametrize("body, n", [
    ({"model": "m", "messages": [], "n": 3}, 3),
    ({"model": "m", "messages": [], "n": 1}, 1),
    ({"model": "m", "messages": [], "n": 3, "stream": True}, 1),  # refused by validation instead
    ({"model": "m", "messages": [], "n": MAX_CHOICES + 1}, 1),
    ({"model": "m", "messages": [], "n": True}, 1),
    ({"model": "m", "messages": [{"role": "user", "content": "say \"n\""}]}, 1),
])
def test_which_bodies_fan_out(body, n):
    several = fan_out_body(json.dumps(body).encode())
    assert (several["n"] if several else 1) == n
    assert fan_out_body(b'{"n": 2, ') is None  # unreadable: the ordinary path says what is wrong


def test_merge_reindexes_choices_and_adds_up_usage():
    def reply(text, cost, rid):
        return chat.Reply({"id": "x", "object": "chat.completion", "model": "m",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "cost": cost,
                                     "prompt_tokens_details": {"cached_tokens": 1}}},
                          {"X-Request-Id": rid})

    merged = merge([reply("a", 0.000001, "r1"), reply("b", 0.000002, "r2")], asked=3)
    assert [(c["index"], c["message"]["content"]) for c in merged.body["choices"]] == [(0, "a"), (1, "b")]
    usage = merged.body["usage"]
    assert (usage["prompt_tokens"], usage["total_tokens"], usage["cost"]) == (10, 14, 0.000003)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 2}
    assert merged.headers["X-Kyma-Choices"] == "2/3" and merged.headers["X-Kyma-Request-Ids"] == "r1,r2"


@pytest.mark.integration
def test_three_choices_are_three_charged_and_logged_calls(gateway, account, oai):
    from tests.servers import db_rows

    before = balance(gateway, account)
    raw = oai.chat.completions.with_raw_response.create(
        model="kimi-k2.5", n=3, max_tokens=20, messages=[{"role": "user", "content": "say exactly: pick me"}])
    reply = raw.parse()
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.message.content == "pick me" for c in reply.choices)
    ids = raw.headers["X-Kyma-Request-Ids"].split(",")
    assert raw.headers["X-Kyma-Choices"] == "3/3" and len(set(ids)) == 3
    rows = db_rows(gateway.env, "SELECT status, cost_micros FROM requestlog WHERE request_id IN ({p}, {p}, {p})", *ids)
    assert [status for status, _ in rows] == [200, 200, 200]
    charged = sum(cost for _, cost in rows)
    assert round(reply.usage.model_extra["cost"] * 1_000_000) == charged
    assert round((before - balance(gateway, account)) * 1_000_000) == charged


@pytest.mark.integration
@pytest.mark.parametrize("extra", [{"n": MAX_CHOICES + 1}, {"n": 2, "stream": True}, {"n": 0}])
def test_choices_beyond_what_can_be_served_are_a_clear_400(oai, extra):
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="kimi-k2.5", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                                    **extra)
    assert err.value.body["param"] == "n"
