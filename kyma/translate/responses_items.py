"""A stored conversation's input items as the Responses API lists them (GET /v1/responses/{id}/input_items)."""

from __future__ import annotations

from kyma.errors import InvalidRequest

MAX_PAGE = 100
_PART_TYPES = {"user": "input_text", "system": "input_text", "developer": "input_text", "assistant": "output_text"}
_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def listed_items(items: list, response_id: str) -> list[dict]:
    """Every item in its listed shape: typed, with an id (a stable one made up when the client sent none)."""
    return [_listed(item, response_id, i) for i, item in enumerate(items)]


def _listed(item: dict, response_id: str, index: int) -> dict:
    kind = item.get("type") or ("message" if "role" in item else "item")
    out = {**item, "type": kind}
    if not isinstance(out.get("id"), str) or not out["id"]:
        # Position in the conversation, which a stored response never changes: pages stay stable.
        out["id"] = f"{_ID_PREFIXES.get(kind, 'item')}_{response_id.removeprefix('resp_')}_{index}"
    if kind == "message":
        content = item.get("content")
        if isinstance(content, str):
            part = _PART_TYPES.get(item.get("role"), "input_text")
            out["content"] = [{"type": part, "text": content}]
        out.setdefault("status", "completed")
    elif kind in ("function_call", "function_call_output"):
        out.setdefault("status", "completed")
    return out


def page(items: list[dict], *, after: str | None, limit, order: str | None) -> dict:
    """One page of items in the Responses list shape; `after` is the last item id of the page before."""
    if order not in (None, "asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    try:
        size = 20 if limit is None else int(limit)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_PAGE}.", param="limit")
    ordered = items if order == "asc" else list(reversed(items))  # newest first unless asked otherwise
    if after is not None:
        ids = [item["id"] for item in ordered]
        if after not in ids:
            raise InvalidRequest(f"No input item with id '{after}' in this response.", param="after")
        ordered = ordered[ids.index(after) + 1:]
    data = ordered[:size]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(ordered) > size}
