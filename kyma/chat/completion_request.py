"""Validation of a legacy completions request (prompt, optional suffix) into a ChatRequest."""

from __future__ import annotations

from kyma import tokens
from kyma.chat.request import (GATEWAY_FIELDS, MAX_STOP, ChatRequest, Needs, _fail, _number, _positive_int,
                               _provider_prefs)


def _prompt(body: dict) -> str:
    """The one prompt: a string, or an array holding one string."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _fail("'prompt' must be a string (or an array of one string: one completion per request).",
                    "prompt", "missing_field" if prompt is None else "invalid_type")
    return prompt


def parse_completion_request(body: dict) -> ChatRequest:
    """Validate a legacy completions body; raise InvalidRequest naming the offending param."""
    models = body.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)):
        raise _fail("'models' must be an array of model ids.", "models")
    model = body.get("model") or (models[0] if models else None)
    if not isinstance(model, str) or not model:
        raise _fail("'model' is required (a model id or alias from GET /v1/models).", "model", "missing_field")
    prompt = _prompt(body)
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise _fail("'suffix' must be a string.", "suffix")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _fail("'stream' must be a boolean.", "stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise _fail("'stream_options' must be an object.", "stream_options")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    for name in ("n", "best_of"):
        if _positive_int(body, name) not in (None, 1):
            raise _fail(f"Only {name}=1 is supported.", name)
    if body.get("echo") not in (None, False):
        raise _fail("'echo' is not supported.", "echo")
    max_tokens = _positive_int(body, "max_tokens")
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= MAX_STOP
                                                           and all(isinstance(s, str) for s in stop))):
        raise _fail(f"'stop' must be a string or an array of up to {MAX_STOP} strings.", "stop")
    upstream = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    upstream["prompt"] = prompt
    if not suffix:
        upstream.pop("suffix", None)
    return ChatRequest(
        model=model, messages=[], stream=stream,
        client_wants_usage=bool(stream and (opts or {}).get("include_usage")),
        max_tokens=max_tokens, needs=Needs(fim=bool(suffix)),
        fallback_models=tuple(m for m in (models or []) if m != model),
        provider=_provider_prefs(body.get("provider")), upstream_body=upstream, api="completions",
        input_tokens=tokens.count_text(prompt) + tokens.count_text(suffix or ""))
