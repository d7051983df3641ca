"""Validation of an OpenAI chat-completions request into a typed ChatRequest (400s name the param)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kyma.errors import InvalidRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})
TOOL_CHOICES = frozenset({"none", "auto", "required"})
# OpenAI allows 4 stop strings; the open-model servers behind most providers take more, and agents
# send more (Continue: 6). Passed through as they are.
MAX_STOP = 16
# Fields only the gateway reads, and fields that would let a client steer the upstream call itself
# (where it goes, which key it uses, paid upstream plugins billed to the operator): never forwarded.
GATEWAY_FIELDS = frozenset({"models", "provider", "route", "transforms", "plugins", "api_key", "api_base",
                            "base_url", "extra_headers", "extra_body", "user_api_key"})


@dataclass(frozen=True)
class Needs:
    """What a serving model must support for this request."""

    tools: bool = False
    vision: bool = False
    structured: bool = False
    fim: bool = False  # a legacy completion with a suffix (fill-in-the-middle)


@dataclass(frozen=True)
class ProviderPrefs:
    """OpenRouter-style provider steering from the request body."""

    order: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    allow_fallbacks: bool = True


@dataclass(frozen=True)
class ChatRequest:
    """A validated request: what routing needs, plus the body to forward upstream.

    `api` is the upstream API it speaks (chat, completions, embeddings); the other APIs count their
    input themselves (`input_tokens`), and embeddings fit the window input by input (`longest_input`).
    """

    model: str
    messages: list
    stream: bool
    client_wants_usage: bool
    max_tokens: int | None
    needs: Needs
    fallback_models: tuple[str, ...]
    provider: ProviderPrefs
    upstream_body: dict = field(repr=False)
    api: str = "chat"
    input_tokens: int | None = None  # counted by the parser (None: count the messages)
    longest_input: int | None = None  # embeddings: the largest single input, which must fit the window
    dimensions: int | None = None  # embeddings: the vector length asked for


def _fail(message: str, param: str, code: str = "invalid_request") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _number(body: dict, name: str, lo: float, hi: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise _fail(f"'{name}' must be a number between {lo:g} and {hi:g}.", name)


def _positive_int(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(f"'{name}' must be a positive integer.", name)
    return value


def _check_tool_calls(where: str, calls) -> None:
    """An assistant message's tool_calls: [{id, type: function, function: {name, arguments: JSON string}}]."""
    if calls is None:
        return
    if not isinstance(calls, list):
        raise _fail(f"{where}.tool_calls must be an array.", f"{where}.tool_calls")
    for k, call in enumerate(calls):
        p = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _fail(f"{p}.function.name is required.", f"{p}.function")
        if not isinstance(fn.get("arguments", ""), str):
            raise _fail(f"{p}.function.arguments must be a JSON string.", f"{p}.function.arguments")
        if not isinstance(call.get("id", ""), str):
            raise _fail(f"{p}.id must be a string.", f"{p}.id")


def _check_message(i: int, m) -> bool:
    """Validate one message; return True when it carries an image."""
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise _fail(f"{where} must be an object.", where)
    role = m.get("role")
    if not isinstance(role, str) or role not in ROLES:  # a set: an object here would be unhashable
        raise _fail(f"{where}.role must be one of {sorted(ROLES)}.", f"{where}.role")
    content = m.get("content")
    if role == "tool" and not isinstance(m.get("tool_call_id"), str):
        raise _fail(f"{where}.tool_call_id is required for role 'tool'.", f"{where}.tool_call_id")
    if "tool_calls" in m:
        _check_tool_calls(where, m["tool_calls"])
    if content is None:
        if role == "assistant":
            return False
        raise _fail(f"{where}.content is required.", f"{where}.content")
    if isinstance(content, str):
        return False
    if not isinstance(content, list):
        raise _fail(f"{where}.content must be a string or an array of content parts.", f"{where}.content")
    images = False
    for j, part in enumerate(content):
        p = f"{where}.content[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str) or part["type"] not in PART_TYPES:
            raise _fail(f"{p}.type must be one of {sorted(PART_TYPES)}.", f"{p}.type")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise _fail(f"{p}.text must be a string.", f"{p}.text")
        if part["type"] == "image_url":
            url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
            if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:image/")):
                raise _fail(f"{p}.image_url.url must be an http(s) URL or a data:image/… URL.", f"{p}.image_url.url")
            images = True
    return images


def _check_tools(body: dict) -> bool:
    tools = body.get("tools")
    if tools is None:
        if body.get("tool_choice") not in (None, "none", "auto"):
            raise _fail("'tool_choice' needs 'tools'.", "tool_choice")
        return False
    if not isinstance(tools, list):
        raise _fail("'tools' must be an array.", "tools")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict) \
                or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _fail(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': …}}}}.", f"tools[{i}]")
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            raise _fail(f"tools[{i}].function.parameters must be a JSON Schema object.", f"tools[{i}].function.parameters")
    choice = body.get("tool_choice")
    if choice is not None and not (isinstance(choice, str) and choice in TOOL_CHOICES):
        name = ((choice or {}).get("function") or {}).get("name") if isinstance(choice, dict) else None
        if not isinstance(name, str) or name not in {t["function"]["name"] for t in tools}:
            raise _fail("'tool_choice' must be none, auto, required, or name one of the given tools.", "tool_choice")
    return bool(tools) and choice != "none"


def _check_response_format(body: dict) -> bool:
    rf = body.get("response_format")
    if rf is None:
        return False
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise _fail("'response_format.type' must be text, json_object or json_schema.", "response_format.type")
    if kind == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("name", ""), str) or not isinstance(js.get("schema", {}), dict):
            raise _fail("'response_format.json_schema' must be an object with a name and a schema.",
                        "response_format.json_schema")
    return kind != "text"


def _provider_prefs(raw) -> ProviderPrefs:
    if raw is None:
        return ProviderPrefs()
    if not isinstance(raw, dict):
        raise _fail("'provider' must be an object.", "provider")

    def names(key):
        value = raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(f"'provider.{key}' must be an array of provider names.", f"provider.{key}")
        return tuple(value)

    allow = raw.get("allow_fallbacks", True)
    if not isinstance(allow, bool):
        raise _fail("'provider.allow_fallbacks' must be a boolean.", "provider.allow_fallbacks")
    return ProviderPrefs(names("order"), names("only"), names("ignore"), allow)


def model_names(body: dict) -> tuple[str, list[str] | None]:
    """The model asked for and the optional `models` fallback list (the first of which may stand in for it)."""
    models = body.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)):
        raise _fail("'models' must be an array of model ids.", "models")
    model = body.get("model") or (models[0] if models else None)
    if not isinstance(model, str) or not model:
        raise _fail("'model' is required (a model id or alias from GET /v1/models).", "model", "missing_field")
    return model, models


def stream_and_sampling(body: dict) -> tuple[bool, dict | None]:
    """`stream` and `stream_options`, after checking the sampling numbers every OpenAI endpoint shares."""
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
    return stream, opts


def check_stop(body: dict) -> None:
    """`stop`: a string or up to MAX_STOP strings."""
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= MAX_STOP
                                                           and all(isinstance(s, str) for s in stop))):
        raise _fail(f"'stop' must be a string or an array of up to {MAX_STOP} strings.", "stop")


def parse_chat_request(body: dict) -> ChatRequest:
    """Validate an OpenAI chat request body; raise InvalidRequest naming the offending param."""
    model, models = model_names(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _fail("'messages' must be a non-empty array.", "messages", "missing_field" if messages is None else "invalid_type")
    vision = any([_check_message(i, m) for i, m in enumerate(messages)])
    stream, opts = stream_and_sampling(body)
    n = _positive_int(body, "n")
    if n not in (None, 1):
        # /v1/chat/completions answers 2..8 itself, one call per choice; what reaches here cannot be served.
        raise _fail("'n' must be 1 here: up to 8 choices are answered on /v1/chat/completions without "
                    "stream, one upstream call (and charge) per choice.", "n")
    max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    check_stop(body)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _fail("'seed' must be an integer.", "seed")
    tools = _check_tools(body)
    structured = _check_response_format(body)
    upstream = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    if max_tokens is not None:
        # One limit, the one the credit hold was sized for: an upstream that reads only one of the
        # two fields must not run past it.
        upstream.pop("max_completion_tokens", None)
        upstream["max_tokens"] = max_tokens
    return ChatRequest(
        model=model, messages=messages, stream=stream,
        client_wants_usage=bool(stream and (opts or {}).get("include_usage")),
        max_tokens=max_tokens, needs=Needs(tools, vision, structured),
        fallback_models=tuple(m for m in (models or []) if m != model),
        provider=_provider_prefs(body.get("provider")), upstream_body=upstream,
    )
