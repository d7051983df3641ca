"""No input to /v1/responses gets a 500: any value in any field is a 4xx in the OpenAI shape, or served."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tests.test_bad_input import FUZZ, api, paths, replaced, values  # noqa: F401 (api is a fixture)

RESPONSES = {
    "model": "kimi-k2.5", "instructions": "be brief", "max_output_tokens": 16, "temperature": 0.5, "top_p": 0.9,
    "stream": False, "store": True, "parallel_tool_calls": True, "metadata": {"k": "v"}, "user": "u",
    "reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "p",
    "previous_response_id": None,
    "input": [{"role": "developer", "content": "rules"},
              {"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                           {"type": "input_image", "image_url": "https://x/y.png"}]},
              {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
              {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
              {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "done"}]},
              {"type": "reasoning", "id": "rs_1", "summary": []}],
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False},
              {"type": "web_search"}],
    "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"}]},
    "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
}


def test_the_full_body_is_served(api):  # noqa: F811
    client, auth = api
    r = client.post("/v1/responses", json=RESPONSES, headers=auth)
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["object"] == "response" and body["output"][0]["content"][0]["text"] == "ok"
    assert client.get(f"/v1/responses/{body['id']}", headers=auth).get_json() == body
    streamed = client.post("/v1/responses", json=dict(RESPONSES, stream=True), headers=auth)
    assert streamed.status_code == 200 and b"event: response.completed" in streamed.get_data()


@FUZZ
@given(data=st.data())
def test_any_value_in_any_field_is_answered_without_a_server_error(api, data):  # noqa: F811
    client, auth = api
    path = data.draw(st.sampled_from(list(paths(RESPONSES))))
    bad = replaced(RESPONSES, path, data.draw(values))
    r = client.post("/v1/responses", data=json.dumps(bad), headers={**auth, "Content-Type": "application/json"})
    assert r.status_code < 500, (path, bad, r.get_data(as_text=True)[:300])
    if r.status_code >= 400:
        assert "error" in r.get_json()


def test_stored_response_ids_of_any_shape_are_not_found(api):  # noqa: F811
    client, auth = api
    for rid in ("resp_x", "0", "%E2%98%83", "a" * 300):
        assert client.get(f"/v1/responses/{rid}", headers=auth).status_code == 404
        assert client.delete(f"/v1/responses/{rid}", headers=auth).status_code == 404
