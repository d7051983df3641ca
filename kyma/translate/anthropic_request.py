"""Anthropic Messages request → OpenAI chat completions request (pure; validates as it goes)."""

from __future__ import annotations

import json

from kyma import tokens
from kyma.errors import InvalidRequest
from kyma.translate.documents import document_text
from kyma.translate.fields import string_field

_ROLES = ("user", "assistant")
_IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
# Anthropic rejects image/jpg, but an OpenAI upstream reads the data URL; normalise instead of failing.
_IMAGE_ALIASES = {"image/jpg": "image/jpeg"}
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
MAX_STOP_SEQUENCES = 16  # what the chat pipeline passes upstream
# Tool results flagged is_error have no OpenAI equivalent; the model sees this prefix instead.
TOOL_ERROR_PREFIX = "Error: "


def anthropic_to_openai_request(body: dict, *, model: str) -> dict:
    """The OpenAI chat body for an Anthropic Messages body; invalid input raises InvalidRequest."""
    out = _translate(body, model=model)
    out["max_tokens"] = _max_tokens(body)
    _sampling(body, out)
    if body.get("stream") is not None:
        if not isinstance(body["stream"], bool):
            raise InvalidRequest("'stream' must be a boolean.", param="stream")
        if body["stream"]:
            # Anthropic streams always end with usage, so ask the pipeline for it.
            out["stream"] = True
            out["stream_options"] = {"include_usage": True}
    return out


def count_tokens_for(body: dict) -> int:
    """Estimated input tokens of an Anthropic Messages body, as the pipeline will estimate them."""
    out = _translate(body, model=str(body.get("model") or ""))
    return tokens.count_messages(out["messages"], out.get("tools"))


def _translate(body: dict, *, model: str) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    leading, rest = _leading_system(body.get("messages"))
    messages = _system(body.get("system"), leading) + _messages(rest)
    out: dict = {"model": model, "messages": messages}
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
    _tool_choice(body.get("tool_choice"), tools, out)
    _thinking(body.get("thinking"))
    _output_format(body.get("output_config"), out)
    return out


# --- system and messages ---------------------------------------------------------------------

def _system(system, more: list[str] = ()) -> list[dict]:
    """The one leading system message: `system`, then the text of system messages that open `messages`."""
    texts = [] if system is None else [_system_text(system, "system")]
    text = "\n\n".join(t for t in [*texts, *more] if t)
    return [{"role": "system", "content": text}] if text else []


def _system_text(content, param: str) -> str:
    """A system prompt's text, from a string or text blocks (cache_control dropped: upstream prompt
    caching is automatic on prefixes)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest("A system prompt must be a string or a list of text blocks.", param=param)
    texts = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest("System prompt blocks must be text blocks.", param=f"{param}.{i}.type")
        texts.append(string_field(block.get("text"), f"{param}.{i}.text"))
    return "\n\n".join(t for t in texts if t)


def _leading_system(messages) -> tuple[list[str], list]:
    """The texts of system messages that open `messages` (they join the system prompt), and the rest."""
    if not isinstance(messages, list):
        return [], messages
    texts = []
    for i, message in enumerate(messages):
        if not (isinstance(message, dict) and message.get("role") == "system"):
            return texts, messages[i:]
        texts.append(_system_text(message.get("content"), f"messages.{i}.content"))
    return texts, []


def _messages(messages) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required and must be a non-empty list.", param="messages")
    out: list[dict] = []
    previous_calls: list[str] = []
    for role, blocks, param in _merged_turns(messages):
        if role == "assistant":
            message = _assistant(blocks)
            previous_calls = [c["id"] for c in message.get("tool_calls", [])]
            out.append(message)
        else:
            out.extend(_user(blocks, previous_calls, param))
            previous_calls = []
    return out


def _merged_turns(messages: list) -> list[tuple[str, list[tuple[str, dict]], str]]:
    """Consecutive same-role messages merged (Anthropic's own rule); blocks keep their param path."""
    turns: list[tuple[str, list[tuple[str, dict]], str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest("Each message must be an object.", param=f"messages.{i}")
        role = message.get("role")
        if role == "system":
            # A system message inside the conversation (Claude Code's mid-conversation-system beta):
            # open-model chat templates refuse a system message after the first turn, so its text
            # joins the neighbouring user turn, marked as the system's.
            text = _system_text(message.get("content"), f"messages.{i}.content")
            role, blocks = "user", [(f"messages.{i}.content", {"type": "text", "text": f"<system>\n{text}\n</system>"})]
        elif not isinstance(role, str) or role not in _ROLES:
            raise InvalidRequest("'role' must be 'user', 'assistant' or 'system'.", param=f"messages.{i}.role")
        else:
            blocks = _blocks(message.get("content"), f"messages.{i}.content")
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks, f"messages.{i}"))
    return turns


def _blocks(content, param: str) -> list[tuple[str, dict]]:
    if isinstance(content, str):
        return [(param, {"type": "text", "text": content})]
    if not isinstance(content, list):
        raise InvalidRequest("'content' must be a string or a list of content blocks.", param=param)
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest("Each content block must be an object with a 'type'.", param=f"{param}.{j}")
    return [(f"{param}.{j}", block) for j, block in enumerate(content)]


def _assistant(blocks: list[tuple[str, dict]]) -> dict:
    texts: list[str] = []
    calls: list[dict] = []
    for param, block in blocks:
        kind = block["type"]
        if kind == "text":
            texts.append(string_field(block.get("text"), f"{param}.text"))
        elif kind == "tool_use":
            calls.append(_tool_call(block, param))
        elif kind in ("thinking", "redacted_thinking"):
            # Dropped: some upstreams (DeepSeek) reject reasoning_content in input messages.
            continue
        else:
            raise InvalidRequest(f"Content block type '{kind}' is not allowed in an assistant message.",
                                 param=f"{param}.type")
    text = "".join(texts)
    message: dict = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    elif not text:
        message["content"] = ""
    return message


def _tool_call(block: dict, param: str) -> dict:
    call_id = string_field(block.get("id"), f"{param}.id", required=True)
    name = string_field(block.get("name"), f"{param}.name", required=True)
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise InvalidRequest("'input' of a tool_use block must be an object.", param=f"{param}.input")
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


def _user(blocks: list[tuple[str, dict]], open_calls: list[str], param: str) -> list[dict]:
    """Tool results first (one `tool` message each, OpenAI's order rule), then the rest as one user message."""
    results: list[dict] = []
    parts: list[dict] = []
    answered: set[str] = set()
    for block_param, block in blocks:
        kind = block["type"]
        if kind == "tool_result":
            call_id = string_field(block.get("tool_use_id"), f"{block_param}.tool_use_id", required=True)
            if call_id not in open_calls:
                raise InvalidRequest(f"tool_result block refers to '{call_id}', which is not a tool_use id "
                                     f"of the previous assistant message.", param=f"{block_param}.tool_use_id")
            answered.add(call_id)
            text, images = _tool_result_content(block, block_param)
            results.append({"role": "tool", "tool_call_id": call_id, "content": text})
            parts.extend(images)
        else:
            part = _user_part(block, block_param)
            if part is not None:
                parts.append(part)
    missing = [c for c in open_calls if c not in answered]
    if missing:
        raise InvalidRequest("`tool_use` ids were found without `tool_result` blocks immediately after: "
                             f"{', '.join(missing)}. Each `tool_use` block must have a corresponding "
                             "`tool_result` block in the next message.", param=param)
    if not parts:
        return results
    return results + [{"role": "user", "content": _user_content(parts)}]


def _tool_result_content(block: dict, param: str) -> tuple[str, list[dict]]:
    """The result as text for the `tool` message; images move to the following user message."""
    content = block.get("content", "")
    if isinstance(content, str):
        texts, images = [content], []
    elif isinstance(content, list):
        texts, images = [], []
        for j, inner in enumerate(content):
            inner_param = f"{param}.content.{j}"
            if not isinstance(inner, dict):
                raise InvalidRequest("Each tool_result content block must be an object.", param=inner_param)
            if inner.get("type") == "text":
                texts.append(string_field(inner.get("text"), f"{inner_param}.text"))
            elif inner.get("type") == "image":
                images.append(_image(inner, inner_param))
            elif inner.get("type") == "document":
                texts.append(document_text(inner, inner_param))
            else:
                raise InvalidRequest("tool_result content blocks must be text, image or document blocks.",
                                     param=f"{inner_param}.type")
    else:
        raise InvalidRequest("'content' of a tool_result must be a string or a list of blocks.",
                             param=f"{param}.content")
    text = "\n".join(t for t in texts if t)
    if block.get("is_error") is True:
        text = TOOL_ERROR_PREFIX + text
    return text, images


def _user_part(block: dict, param: str) -> dict | None:
    kind = block["type"]
    if kind == "text":
        text = string_field(block.get("text"), f"{param}.text")
        return {"type": "text", "text": text} if text else None
    if kind == "image":
        return _image(block, param)
    if kind == "document":
        return {"type": "text", "text": document_text(block, param)}
    if kind in ("tool_use", "thinking", "redacted_thinking"):
        raise InvalidRequest(f"Content block type '{kind}' is only allowed in assistant messages.",
                             param=f"{param}.type")
    raise InvalidRequest(f"Unsupported content block type '{kind}'.", param=f"{param}.type")


def _user_content(parts: list[dict]):
    """A plain string when the turn is text only: text-only upstream templates accept nothing else."""
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _image(block: dict, param: str) -> dict:
    source = block.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest("An image block needs a 'source' object.", param=f"{param}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        media_type = _IMAGE_ALIASES.get(media_type, media_type) if isinstance(media_type, str) else None
        if media_type not in _IMAGE_TYPES:
            raise InvalidRequest("Image 'media_type' must be one of image/jpeg, image/png, image/gif, "
                                 "image/webp.", param=f"{param}.source.media_type")
        data = string_field(source.get("data"), f"{param}.source.data", required=True)
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if kind == "url":
        url = string_field(source.get("url"), f"{param}.source.url", required=True)
        return {"type": "image_url", "image_url": {"url": url}}
    raise InvalidRequest("Image source type must be 'base64' or 'url'.", param=f"{param}.source.type")


# --- tools ------------------------------------------------------------------------------------

def _tools(tools) -> list[dict]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be a list.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise InvalidRequest("Each tool must be an object.", param=f"tools.{i}")
        kind = tool.get("type", "custom")
        if kind not in ("custom", None):
            raise InvalidRequest(f"Server tool type '{kind}' is not supported by this gateway.",
                                 param=f"tools.{i}.type")
        name = string_field(tool.get("name"), f"tools.{i}.name", required=True)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("'input_schema' is required and must be a JSON schema object.",
                                 param=f"tools.{i}.input_schema")
        function: dict = {"name": name}
        if tool.get("description") is not None:
            function["description"] = string_field(tool["description"], f"tools.{i}.description")
        function["parameters"] = schema
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice, tools: list[dict], out: dict) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise InvalidRequest("'tool_choice.type' must be one of auto, any, tool, none.", param="tool_choice.type")
    kind = choice["type"]
    if not tools:
        if kind in ("auto", "none"):
            return  # OpenAI rejects tool_choice without tools; these two mean nothing then anyway.
        raise InvalidRequest(f"tool_choice '{kind}' needs at least one tool in 'tools'.", param="tool_choice")
    if kind == "tool":
        name = string_field(choice.get("name"), "tool_choice.name", required=True)
        if name not in {t["function"]["name"] for t in tools}:
            raise InvalidRequest(f"tool_choice names '{name}', which is not in 'tools'.", param="tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        out["tool_choice"] = _TOOL_CHOICES[kind]
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise InvalidRequest("'disable_parallel_tool_use' must be a boolean.",
                             param="tool_choice.disable_parallel_tool_use")
    if disable and kind != "none":
        out["parallel_tool_calls"] = False


# --- scalar parameters ------------------------------------------------------------------------

def _max_tokens(body: dict) -> int:
    value = body.get("max_tokens")
    if value is None:
        raise InvalidRequest("'max_tokens' is required.", param="max_tokens")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise InvalidRequest("'max_tokens' must be a positive integer.", param="max_tokens")
    return int(value)


def _sampling(body: dict, out: dict) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InvalidRequest(f"'{name}' must be a number between 0 and 1.", param=name)
        out[name] = value
    top_k = body.get("top_k")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, float)) or top_k != int(top_k) or top_k < 0:
            raise InvalidRequest("'top_k' must be a non-negative integer.", param="top_k")
        out["top_k"] = int(top_k)  # not an OpenAI field; vLLM-style upstreams honour it
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise InvalidRequest("'stop_sequences' must be a list of non-empty strings.", param="stop_sequences")
        if len(stops) > MAX_STOP_SEQUENCES:
            raise InvalidRequest(f"At most {MAX_STOP_SEQUENCES} stop_sequences are supported.",
                                 param="stop_sequences")
        if stops:
            out["stop"] = list(stops)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidRequest("'metadata' must be an object.", param="metadata")
        user_id = metadata.get("user_id")
        if user_id is not None:
            out["user"] = string_field(user_id, "metadata.user_id")


def _thinking(thinking) -> None:
    """Accepted and validated loosely; the budget is dropped (reasoning models think anyway)."""
    if thinking is None:
        return
    if not isinstance(thinking, dict) or not isinstance(thinking.get("type"), str):
        raise InvalidRequest("'thinking' must be an object with a 'type'.", param="thinking")


def _output_format(config, out: dict) -> None:
    """output_config.format json_schema → response_format json_schema; effort is dropped."""
    if not isinstance(config, dict):
        return
    fmt = config.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        out["response_format"] = {"type": "json_schema",
                                  "json_schema": {"name": "output", "schema": fmt["schema"]}}


