"""OpenAI Responses request → OpenAI chat completions request (pure; validates as it goes)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from kyma.errors import InvalidRequest
from kyma.translate.fields import string_field

_MESSAGE_ROLES = ("user", "assistant", "system", "developer")
_TOOL_CHOICES = ("none", "auto", "required")
_TOOL_OUTPUTS = ("function_call_output", "custom_tool_call_output")
# Items the gateway keeps no trace of upstream: reasoning it cannot replay, hosted tools' own records.
_SKIPPED_ITEMS = ("reasoning", "web_search_call", "file_search_call", "compaction")
# Requests for hosted features the gateway cannot provide.
_UNSUPPORTED_FIELDS = {"conversation": "conversations", "prompt": "prompt templates"}
MAX_METADATA = 16


@dataclass(frozen=True)
class Translated:
    """A Responses request made ready for the chat pipeline, and what its response echoes back."""

    chat: dict  # the chat completions body
    items: list  # the whole conversation as Responses input items (history first), for storing
    echo: dict  # request fields every response object repeats (instructions, tools, text, …)
    dropped: tuple[str, ...]  # tool types the gateway cannot run, left out of the upstream call
    store: bool
    stream: bool


def responses_to_chat_request(body: dict, *, history: list | None = None) -> Translated:
    """The chat body for a Responses body; `history` is the stored conversation previous_response_id names."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required (a model id or alias from GET /v1/models).", param="model",
                             code="missing_field")
    for name, what in _UNSUPPORTED_FIELDS.items():
        if body.get(name) is not None:
            raise InvalidRequest(f"'{name}' is not supported: this gateway does not keep {what}.", param=name)
    if body.get("background") is True:
        raise InvalidRequest("'background' responses are not supported.", param="background")
    items = list(history or []) + input_items(body.get("input"), required=not history)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("'instructions' must be a string.", param="instructions")
    tools, dropped = _tools(body.get("tools"))
    chat: dict = {"model": model, "messages": _messages(items, instructions, len(history or []))}
    if tools:
        chat["tools"] = tools
    choice = _tool_choice(body.get("tool_choice"), tools, dropped)
    if choice is not None:
        chat["tool_choice"] = choice
    text = _text_format(body.get("text"), chat)
    _scalars(body, chat, bool(tools))
    stream = _flag(body, "stream", False)
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return Translated(chat=chat, items=items, echo=_echo(body, tools, choice, text), dropped=dropped,
                      store=_flag(body, "store", True), stream=stream)


def input_items(value, *, required: bool = True) -> list:
    """`input` as a list of items: a string is one user message."""
    if value is None and not required:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list) or (required and not value):
        raise InvalidRequest("'input' must be a string or a non-empty list of input items.", param="input",
                             code="missing_field" if value is None else "invalid_type")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest("Each input item must be an object.", param=f"input[{i}]")
    return list(value)


# --- input items → chat messages ----------------------------------------------------------------

def _messages(items: list, instructions: str | None, stored: int) -> list[dict]:
    """Chat messages: one leading system message (instructions, then the system and developer messages
    that open the input), then the conversation. Later system or developer messages join it as user
    text inside <system> tags: open-model chat templates refuse a system message after the first turn.
    The first `stored` items come from previous_response_id, and errors in them are named after it."""
    system = [instructions] if instructions else []
    out: list[dict] = []
    calls: set[str] = set()
    images: list[dict] = []  # from tool outputs: they follow the run of tool messages as a user message
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        param = f"input[{i - stored}]" if i >= stored else "previous_response_id"
        if images and kind not in _TOOL_OUTPUTS:
            out.append({"role": "user", "content": images})
            images = []
        if kind == "message":
            role = item.get("role")
            if not isinstance(role, str) or role not in _MESSAGE_ROLES:
                raise InvalidRequest(f"{param}.role must be one of {', '.join(_MESSAGE_ROLES)}.", param=f"{param}.role")
            if role in ("system", "developer"):
                text = _text_content(item.get("content"), f"{param}.content")
                if not out:
                    system.append(text)
                else:
                    out.append({"role": "user", "content": f"<system>\n{text}\n</system>"})
            elif role == "user":
                out.append({"role": "user", "content": _user_content(item.get("content"), f"{param}.content")})
            else:
                _assistant_text(out, _text_content(item.get("content"), f"{param}.content"))
        elif kind in ("function_call", "custom_tool_call"):
            call = _tool_call(item, kind, param)
            calls.add(call["id"])
            if not (out and out[-1]["role"] == "assistant"):
                out.append({"role": "assistant", "content": None})
            out[-1].setdefault("tool_calls", []).append(call)
        elif kind in _TOOL_OUTPUTS:
            call_id = string_field(item.get("call_id"), f"{param}.call_id", required=True)
            if call_id not in calls:
                raise InvalidRequest(f"No tool call found for function call output with call_id '{call_id}'.",
                                     param=f"{param}.call_id")
            text, more = _tool_output(item.get("output"), param)
            out.append({"role": "tool", "tool_call_id": call_id, "content": text})
            images += more
        elif kind in _SKIPPED_ITEMS:
            continue
        else:
            raise InvalidRequest(f"Input item type '{kind}' is not supported by this gateway.", param=f"{param}.type")
    if images:
        out.append({"role": "user", "content": images})
    for message in out:
        if message["role"] == "assistant" and message["content"] is None and not message.get("tool_calls"):
            message["content"] = ""
    text = "\n\n".join(t for t in system if t)
    messages = ([{"role": "system", "content": text}] if text else []) + out
    if not any(m["role"] != "system" for m in messages):
        raise InvalidRequest("'input' must hold at least one user, assistant or tool item.", param="input")
    return messages


def _assistant_text(out: list[dict], text: str) -> None:
    """Assistant text joins the assistant message before it until that one has made tool calls."""
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant" and not last.get("tool_calls"):
        last["content"] = "\n\n".join(t for t in (last["content"], text) if t) or None
    else:
        out.append({"role": "assistant", "content": text or None})


def _tool_call(item: dict, kind: str, param: str) -> dict:
    call_id = string_field(item.get("call_id"), f"{param}.call_id", required=True)
    name = string_field(item.get("name"), f"{param}.name", required=True)
    if kind == "custom_tool_call":  # free-form input: the function sees it as {"input": …}
        arguments = json.dumps({"input": string_field(item.get("input"), f"{param}.input")}, ensure_ascii=False)
    else:
        arguments = item.get("arguments", "")
        if not isinstance(arguments, str):
            raise InvalidRequest(f"{param}.arguments must be a JSON string.", param=f"{param}.arguments")
        arguments = arguments or "{}"  # templates that parse the arguments choke on an empty string
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_output(output, param: str) -> tuple[str, list[dict]]:
    """A tool call's output as the tool message's text, and its images (a tool message carries text only)."""
    if isinstance(output, str):
        return output, []
    if not isinstance(output, list):
        raise InvalidRequest(f"{param}.output must be a string or a list of content parts.", param=f"{param}.output")
    content = _user_content(output, f"{param}.output")
    if isinstance(content, str):
        return content, []
    return ("\n\n".join(p["text"] for p in content if p["type"] == "text"),
            [p for p in content if p["type"] == "image_url"])


def _text_content(content, param: str) -> str:
    """The text of a content string or of text parts (input_text, output_text, refusal)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{param} must be a string or a list of content parts.", param=param)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            texts.append(string_field(part.get("text"), f"{param}[{j}].text"))
        elif kind == "refusal":
            texts.append(string_field(part.get("refusal"), f"{param}[{j}].refusal"))
        else:
            raise InvalidRequest(f"{param}[{j}].type must be a text part here, not {kind!r}.",
                                 param=f"{param}[{j}].type")
    return "\n\n".join(t for t in texts if t)


def _user_content(content, param: str):
    """A user message's content: a string when it is text only (text-only templates take nothing else)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{param} must be a string or a list of content parts.", param=param)
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"{param}[{j}]"
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": string_field(part.get("text"), f"{where}.text")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:image/")):
                raise InvalidRequest(f"{where}.image_url must be an http(s) URL or a data:image/… URL "
                                     f"(file ids are not supported).", param=f"{where}.image_url")
            image: dict = {"url": url}
            if part.get("detail") in ("auto", "low", "high"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise InvalidRequest(f"Content part type {kind!r} is not supported by this gateway.", param=f"{where}.type")
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


# --- tools --------------------------------------------------------------------------------------

def _tools(tools) -> tuple[list[dict], tuple[str, ...]]:
    """Function tools as chat tools, and the types of the tools the gateway cannot run (left out)."""
    if tools is None:
        return [], ()
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be a list.", param="tools")
    out, dropped = [], []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str):
            raise InvalidRequest("Each tool must be an object with a 'type'.", param=f"tools[{i}]")
        if kind != "function":
            dropped.append(kind)
            continue
        function: dict = {"name": string_field(tool.get("name"), f"tools[{i}].name", required=True)}
        if tool.get("description") is not None:
            function["description"] = string_field(tool["description"], f"tools[{i}].description")
        params = tool.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise InvalidRequest("'parameters' must be a JSON Schema object.", param=f"tools[{i}].parameters")
        function["parameters"] = params if params is not None else {"type": "object", "properties": {}}
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    if dropped and not out:
        raise InvalidRequest(f"Tool type '{dropped[0]}' is not supported by this gateway; only function tools "
                             f"are (hosted tools need OpenAI's servers).", param="tools", code="unsupported_tool")
    return out, tuple(dict.fromkeys(dropped))


def _tool_choice(choice, tools: list[dict], dropped: tuple[str, ...]):
    """The chat tool_choice: none/auto/required, or a named function (allowed_tools narrows `tools`)."""
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        if not tools:
            if choice == "required":
                raise InvalidRequest("tool_choice 'required' needs at least one function tool.", param="tool_choice")
            return None  # none or auto without tools mean nothing
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    names = {t["function"]["name"] for t in tools}
    if kind == "function":
        name = string_field(choice.get("name"), "tool_choice.name", required=True)
        if name not in names:
            raise InvalidRequest(f"tool_choice names '{name}', which is not in 'tools'.", param="tool_choice.name")
        return {"type": "function", "function": {"name": name}}
    if kind == "allowed_tools":
        mode = choice.get("mode", "auto")
        listed = choice.get("tools") if isinstance(choice.get("tools"), list) else []
        allowed = {t["name"] for t in listed if isinstance(t, dict) and t.get("type") == "function"
                   and isinstance(t.get("name"), str)}
        if mode not in ("auto", "required") or not allowed & names:
            raise InvalidRequest("allowed_tools needs mode auto or required and at least one function tool of "
                                 "'tools'.", param="tool_choice")
        tools[:] = [t for t in tools if t["function"]["name"] in allowed]
        return mode
    if isinstance(kind, str) and kind in dropped:
        raise InvalidRequest(f"tool_choice asks for tool type '{kind}', which this gateway cannot run.",
                             param="tool_choice")
    raise InvalidRequest("'tool_choice' must be none, auto, required, or name a function tool.", param="tool_choice")


# --- text format and scalar fields --------------------------------------------------------------

def _text_format(text, chat: dict) -> dict:
    """text.format → response_format; returns the `text` object the response echoes."""
    if text is None:
        return {"format": {"type": "text"}}
    if not isinstance(text, dict):
        raise InvalidRequest("'text' must be an object.", param="text")
    fmt = text.get("format")
    if fmt is None:
        return {**text, "format": {"type": "text"}}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("'text.format.schema' must be a JSON Schema object.", param="text.format.schema")
        spec: dict = {"name": string_field(fmt.get("name"), "text.format.name") or "output", "schema": schema}
        if isinstance(fmt.get("strict"), bool):
            spec["strict"] = fmt["strict"]
        if isinstance(fmt.get("description"), str):
            spec["description"] = fmt["description"]
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif kind != "text":
        raise InvalidRequest("'text.format.type' must be text, json_object or json_schema.", param="text.format.type")
    return text


def _scalars(body: dict, chat: dict, has_tools: bool) -> None:
    value = body.get("max_output_tokens")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
            raise InvalidRequest("'max_output_tokens' must be a positive integer.", param="max_output_tokens")
        chat["max_tokens"] = int(value)
    for name in ("temperature", "top_p", "models", "provider"):
        if body.get(name) is not None:
            chat[name] = body[name]  # the pipeline checks them: ranges, and the steering of fallback
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise InvalidRequest("'parallel_tool_calls' must be a boolean.", param="parallel_tool_calls")
        if has_tools:
            chat["parallel_tool_calls"] = parallel
    for name in ("user", "safety_identifier"):
        if body.get(name) is not None:
            string_field(body[name], name)
    if isinstance(body.get("user"), str) and body["user"]:
        chat["user"] = body["user"]
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > MAX_METADATA
                                 or not all(isinstance(v, str) for v in metadata.values())):
        raise InvalidRequest(f"'metadata' must be an object of up to {MAX_METADATA} string values.", param="metadata")
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise InvalidRequest("'reasoning' must be an object.", param="reasoning")  # accepted; models think anyway
    include = body.get("include")
    if include is not None and not (isinstance(include, list) and all(isinstance(v, str) for v in include)):
        raise InvalidRequest("'include' must be a list of strings.", param="include")


def _echo(body: dict, tools: list[dict], choice, text: dict) -> dict:
    """The request's fields as a response object repeats them."""
    function_tools = [{"type": "function", "name": t["function"]["name"],
                       "description": t["function"].get("description"),
                       "parameters": t["function"]["parameters"], "strict": t["function"].get("strict")}
                      for t in tools]
    if isinstance(choice, dict):
        choice = {"type": "function", "name": choice["function"]["name"]}
    tier = body.get("service_tier")
    return {
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key") if isinstance(body.get("prompt_cache_key"), str) else None,
        "reasoning": body.get("reasoning") if isinstance(body.get("reasoning"), dict) else None,
        "service_tier": tier if tier in ("auto", "default", "flex", "scale", "priority") else "default",
        "store": _flag(body, "store", True),
        "temperature": body.get("temperature"),
        "text": text,
        "tool_choice": choice or "auto",
        "tools": function_tools,
        "top_p": body.get("top_p"),
        "truncation": body.get("truncation") if body.get("truncation") in ("auto", "disabled") else "disabled",
        "user": body.get("user") if isinstance(body.get("user"), str) else None,
    }


def _flag(body: dict, name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a boolean.", param=name)
    return value


