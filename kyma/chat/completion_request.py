"""Validation of a legacy completions request (prompt, optional suffix) into a ChatRequest."""

from __future__ import annotations

from kyma import tokens
from kyma.chat.request import (GATEWAY_FIELDS, ChatRequest, Needs, _fail, _positive_int, _provider_prefs,
                               check_stop, model_names, stream_and_sampling)


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
    model, models = model_names(body)
    prompt = _prompt(body)
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise _fail("'suffix' must be a string.", "suffix")
    stream, opts = stream_and_sampling(body)
    for name in ("n", "best_of"):
        if _positive_int(body, name) not in (None, 1):
            raise _fail(f"Only {name}=1 is supported.", name)
    if body.get("echo") not in (None, False):
        raise _fail("'echo' is not supported.", "echo")
    max_tokens = _positive_int(body, "max_tokens")
    check_stop(body)
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
