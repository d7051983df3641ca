"""Drive the gateway with the last 0.x anthropic SDK; print a JSON summary for tests/test_anthropic_legacy_sdk.py.

Runs under .venv-anthropic0/bin/python (anthropic 0.x cannot share .venv with 2.x), so it imports
nothing from kyma or the test suite. Input on stdin: {"base_url", "api_key", "rate_key", "bad_key"}.
Every request's headers are recorded as httpx put them on the wire, so the test can check that 0.x
sends x-api-key and no Authorization header.
"""

from __future__ import annotations

import json
import sys

import anthropic
import httpx

WEATHER = {"name": "get_weather", "description": "Weather for a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SEEN: list[dict] = []  # one entry per request sent (this script is a one-shot process)


def _record(request: httpx.Request) -> None:
    SEEN.append({"path": request.url.path, "x_api_key": request.headers.get("x-api-key"),
                 "authorization": request.headers.get("authorization"),
                 "anthropic_version": request.headers.get("anthropic-version"),
                 "user_agent": request.headers.get("user-agent")})


def _client(base_url: str, api_key: str) -> anthropic.Anthropic:
    http = anthropic.DefaultHttpxClient(event_hooks={"request": [_record]})
    return anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=30, http_client=http)


def _error(exc: anthropic.APIStatusError) -> dict:
    body = exc.body if isinstance(exc.body, dict) else {}
    return {"class": type(exc).__name__, "status": exc.status_code, "body_type": body.get("type"),
            "error_type": (body.get("error") or {}).get("type"),
            "retry_after": exc.response.headers.get("retry-after")}


def create(sdk: anthropic.Anthropic) -> dict:
    """messages.create with a claude-* name."""
    msg = sdk.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                              messages=[{"role": "user", "content": "say exactly: Hello from Kyma"}])
    return {"id": msg.id, "model": msg.model, "types": [b.type for b in msg.content], "text": msg.content[0].text,
            "stop_reason": msg.stop_reason, "input_tokens": msg.usage.input_tokens,
            "output_tokens": msg.usage.output_tokens}


def stream(sdk: anthropic.Anthropic) -> dict:
    """messages.stream: text_stream, then the raw event types of a second stream."""
    with sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=200,
                             messages=[{"role": "user", "content": "count to 30"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    raw = sdk.messages.create(model="claude-sonnet-4-5", max_tokens=50, stream=True,
                              messages=[{"role": "user", "content": "say exactly: hi there"}])
    return {"text": text, "stop_reason": final.stop_reason, "output_tokens": final.usage.output_tokens,
            "raw_events": [e.type for e in raw]}


def tool_round_trip(sdk: anthropic.Anthropic) -> dict:
    """A streamed tool call (input_json_delta), then the tool_result turn."""
    ask = [{"role": "user", "content": "Use get_weather for city=Oslo"}]
    partial = []
    with sdk.messages.stream(model="claude-haiku-4-5", max_tokens=200, tools=[WEATHER], messages=ask) as s:
        for event in s:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partial.append(event.delta.partial_json)
        final = s.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    follow = ask + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id,
                                                  "content": "4 degrees and rain"}]}] if calls else ask
    answer = sdk.messages.create(model="claude-haiku-4-5", max_tokens=200, tools=[WEATHER], messages=follow)
    return {"stop_reason": final.stop_reason, "calls": [{"id": c.id, "name": c.name, "input": c.input} for c in calls],
            "input_json_deltas": len(partial), "partial_json": "".join(partial),
            "answer_stop_reason": answer.stop_reason, "answer_text": answer.content[0].text}


def count_tokens(sdk: anthropic.Anthropic) -> dict:
    """messages.count_tokens."""
    counted = sdk.messages.count_tokens(model="claude-sonnet-4-5", tools=[WEATHER],
                                        messages=[{"role": "user", "content": "What is the weather in Oslo?"}])
    return {"input_tokens": counted.input_tokens}


def bad_key(base_url: str, key: str) -> dict:
    """An unknown key must raise AuthenticationError."""
    try:
        _client(base_url, key).messages.create(model="claude-sonnet-4-5", max_tokens=8,
                                               messages=[{"role": "user", "content": "hi"}])
    except anthropic.AuthenticationError as exc:
        return _error(exc)
    return {"class": None}


def rate_limited(base_url: str, key: str, attempts: int = 40) -> dict:
    """Tier 0 admits 30 requests/minute (25 per model): a bounded loop must end in RateLimitError."""
    sdk = _client(base_url, key)
    for n in range(1, attempts + 1):
        try:
            sdk.messages.create(model="claude-haiku-4-5", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
        except anthropic.RateLimitError as exc:
            return {**_error(exc), "attempt": n}
    return {"class": None, "attempt": attempts}


def out_of_credit(sdk: anthropic.Anthropic) -> dict:
    """A worst case (100k-token prompt, 65,536 output tokens on glm-5.1) above the $0.50 signup credit."""
    try:
        sdk.messages.create(model="glm-5.1", max_tokens=65536,
                            messages=[{"role": "user", "content": "word " * 100_000}])
    except anthropic.APIStatusError as exc:
        return _error(exc)
    return {"class": None}


def main() -> None:
    """Run every check and print one JSON object."""
    args = json.load(sys.stdin)
    sdk = _client(args["base_url"], args["api_key"])
    summary = {"sdk_version": anthropic.__version__, "create": create(sdk), "stream": stream(sdk),
               "tool": tool_round_trip(sdk), "count_tokens": count_tokens(sdk),
               "auth_error": bad_key(args["base_url"], args["bad_key"]),
               "rate_limit": rate_limited(args["base_url"], args["rate_key"]),
               "billing": out_of_credit(sdk)}
    summary["requests"] = SEEN
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
