"""Simulated prompt caching: a repeated prompt prefix of 1,024+ tokens is reported as cached."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

from kyma.tokens import count_messages

MIN_CACHED_PREFIX = 1024  # OpenAI caches prompts from 1,024 tokens on,
CACHE_STEP = 128          # in 128-token increments.


class PrefixCache:
    """An LRU of prompt-prefix hashes seen by this process (one per simulator app)."""

    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def cached_tokens(self, model: str, messages: list, tools: list | None) -> int:
        """Tokens of the longest previously seen prefix (a multiple of 128, or 0); remembers this prompt."""
        prefixes = self._prefixes(model, messages, tools)
        hit = 0
        for digest, tokens in prefixes:
            if digest in self._seen:
                self._seen.move_to_end(digest)
                hit = max(hit, tokens)
        for digest, _ in prefixes:
            self._remember(digest)
        if hit < MIN_CACHED_PREFIX:
            return 0
        return hit // CACHE_STEP * CACHE_STEP

    def _prefixes(self, model: str, messages: list, tools: list | None) -> list[tuple[str, int]]:
        """(hash, token count) of every prefix that leaves out at least the last message."""
        running = hashlib.sha256(json.dumps([model, tools], sort_keys=True, default=str).encode())
        out = []
        for k in range(len(messages) - 1):
            running.update(json.dumps(messages[k], sort_keys=True, default=str).encode())
            out.append((running.copy().hexdigest(), count_messages(messages[: k + 1], tools)))
        return out

    def _remember(self, digest: str) -> None:
        self._seen[digest] = None
        self._seen.move_to_end(digest)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
