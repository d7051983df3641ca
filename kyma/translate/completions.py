"""Legacy completions (`text_completion`) ⇄ the chat shapes the pipeline relays: text ⇄ message content."""

from __future__ import annotations


def chat_reply_from_legacy(body: dict) -> dict:
    """An upstream text_completion as a chat.completion (choices[0].text → message.content).

    Raises ValueError when it has no choice with a text.
    """
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict) or not isinstance(first.get("text"), str):
        raise ValueError("a completion without choices[0].text")
    choice = {"index": 0, "message": {"role": "assistant", "content": first["text"]},
              "finish_reason": first.get("finish_reason")}
    return dict(body, choices=[choice])


def chat_chunk_from_legacy(chunk: dict) -> dict:
    """An upstream text_completion stream chunk as a chat.completion.chunk (text → delta.content)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return chunk
    out = []
    for ch in choices:
        if not isinstance(ch, dict) or "delta" in ch:
            out.append(ch)
            continue
        text = ch.get("text")
        out.append({"index": ch.get("index", 0), "delta": {"content": text} if isinstance(text, str) and text else {},
                    "finish_reason": ch.get("finish_reason")})
    return dict(chunk, choices=out)


def legacy_reply(body: dict, completion_id: str) -> dict:
    """The client's text_completion from the pipeline's chat.completion."""
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    return {"id": completion_id, "object": "text_completion", "created": body.get("created"),
            "model": body.get("model"),
            "choices": [{"text": message.get("content") or "", "index": 0, "logprobs": None,
                         "finish_reason": choice.get("finish_reason") or "stop"}],
            "usage": body.get("usage")}


def legacy_chunk(chunk: dict, completion_id: str) -> dict | None:
    """The client's text_completion stream chunk from a relayed chat chunk; None when it says nothing."""
    out = {"id": completion_id, "object": "text_completion", "created": chunk.get("created"),
           "model": chunk.get("model"), "choices": []}
    for ch in chunk.get("choices") or ():
        text = (ch.get("delta") or {}).get("content") or ""
        if text or ch.get("finish_reason"):
            out["choices"].append({"text": text, "index": ch.get("index", 0), "logprobs": None,
                                   "finish_reason": ch.get("finish_reason")})
    for key in ("usage", "kyma"):
        if key in chunk:
            out[key] = chunk[key]
    if not out["choices"] and "usage" not in out:
        return None  # a role-only lead chunk: nothing for a text completion
    return out
