"""`n` > 1 on /v1/chat/completions: one upstream call per choice, run side by side, merged into one reply.

Open-model upstreams mostly refuse `n`, so each choice is a whole pipeline call of its own — its own
rate-limit admission, credit hold, charge and request-log row — and the reply's usage and cost are
their sums. When some choices fail and others succeed, the reply carries the successes (they were
charged) and says how many were asked for; when none succeeds, the first error is the answer.
"""

from __future__ import annotations

import gevent

from kyma import chat, strict_json
from kyma.db import connected
from kyma.errors import KymaError
from kyma.greenlets import spawn_in_request

MAX_CHOICES = 8  # the request's `n` above this is refused by the pipeline's validation


def fan_out_body(raw: bytes) -> dict | None:
    """The body of a request that fans out (`n` 2..MAX_CHOICES, not streamed); None for everything else.

    Only bodies that mention "n" are parsed here, and once; anything invalid goes down the ordinary
    path, where validation refuses it and the refusal is logged.
    """
    if b'"n"' not in raw:
        return None
    try:
        body = strict_json.loads(raw)
    except ValueError:
        return None
    n = body.get("n") if isinstance(body, dict) else None
    if isinstance(n, bool) or not isinstance(n, int) or not 1 < n <= MAX_CHOICES or body.get("stream") is True:
        return None
    return body


def fan_out(body: dict, serve_one) -> chat.Reply:
    """Serve body["n"] single-choice calls concurrently (serve_one(body) → Reply) and merge their replies."""
    n = body["n"]
    single = {k: v for k, v in body.items() if k != "n"}

    def one(_: int):
        with connected():  # a greenlet of its own needs its own database connection, closed after
            try:
                return serve_one(dict(single))
            except KymaError as err:
                return err

    jobs = [spawn_in_request(one, i) for i in range(n)]
    gevent.joinall(jobs)  # every call ends before an error ends the request: none is left running unlogged
    for job in jobs:
        if job.exception is not None:
            raise job.exception
    outcomes = [job.value for job in jobs]
    replies = [o for o in outcomes if isinstance(o, chat.Reply)]
    if not replies:
        raise outcomes[0]
    return merge(replies, n)


def merge(replies: list[chat.Reply], asked: int) -> chat.Reply:
    """One chat.completion with every reply's choice, re-indexed, and the sums of their usage."""
    body = dict(replies[0].body)
    body["choices"] = [dict(r.body["choices"][0], index=i) for i, r in enumerate(replies)]
    body["usage"] = _summed([r.body.get("usage") or {} for r in replies])
    headers = dict(replies[0].headers)
    headers["X-Kyma-Choices"] = f"{len(replies)}/{asked}"
    headers["X-Kyma-Request-Ids"] = ",".join(r.headers.get("X-Request-Id", "") for r in replies)
    return chat.Reply(body, headers)


def _summed(usages: list[dict]) -> dict:
    """Add up numbers (cost included) field by field, nested details too; keep the first of anything else."""
    total: dict = {}
    for usage in usages:
        for key, value in usage.items():
            if isinstance(value, bool) or value is None:
                total.setdefault(key, value)
            elif isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict):
                total[key] = _summed([total.get(key) or {}, value])
            else:
                total.setdefault(key, value)
    if isinstance(total.get("cost"), float):
        total["cost"] = round(total["cost"], 6)  # micro-dollars: sums of floats drift below them
    return total
