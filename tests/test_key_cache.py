"""The per-worker API-key cache: a kept row counts only under the generation it was read with, and
only for its TTL; without an answer from Redis every lookup reads the database."""

from __future__ import annotations

import pytest

from kyma.services.key_cache import TTL_SECONDS, KeyCache


class _Redis(Exception):
    pass


class _FakeRedis:
    """GET and INCR on one key, as the pipeliner and its client run them."""

    def __init__(self):
        self.value: bytes | None = None
        self.down = False
        self.client = self

    def execute(self, command: str, key: str):
        if self.down:
            raise _Redis("connection refused")
        assert command == "GET"
        return self.value

    def execute_command(self, command: str, key: str, *args):
        if self.down:
            raise _Redis("connection refused")
        if command == "SET":
            assert args[1:] == ("NX",)
            if self.value is None:
                self.value = str(args[0]).encode()
            return
        assert command == "INCR"
        self.value = str(int(self.value or 0) + 1).encode()
        return int(self.value)


@pytest.fixture()
def setup():
    redis, now = _FakeRedis(), [100.0]
    redis.value = b"7"  # a running system's generation
    loads: list[str] = []

    def load(row="row"):
        loads.append(row)
        return row

    cache = KeyCache(redis, "p:auth:generation", (_Redis,), clock=lambda: now[0])
    return cache, redis, now, loads, load


def test_a_kept_row_is_used_until_a_change_anywhere(setup):
    cache, redis, now, loads, load = setup
    assert cache.fetch("h", load) == "row" and cache.fetch("h", load) == "row"
    assert loads == ["row"], "the second lookup used the kept row"
    redis.execute_command("INCR", "p:auth:generation")  # another instance revoked a key
    assert cache.fetch("h", lambda: load("revoked")) == "revoked"
    assert cache.fetch("h", load) == "revoked" and loads == ["row", "revoked"]


def test_this_workers_own_change_drops_its_rows_and_counts_everywhere(setup):
    cache, redis, now, loads, load = setup
    cache.fetch("h", load)
    cache.changed()
    assert redis.value == b"8" and cache.entries == {}


def test_a_kept_row_expires_after_its_ttl(setup):
    cache, redis, now, loads, load = setup
    cache.fetch("h", load)
    now[0] += TTL_SECONDS - 0.001
    cache.fetch("h", load)
    now[0] += 0.002
    cache.fetch("h", load)
    assert len(loads) == 2


def test_without_redis_every_lookup_reads_the_database(setup):
    cache, redis, now, loads, load = setup
    cache.fetch("h", load)
    redis.down = True
    cache.fetch("h", load)
    cache.fetch("h", load)
    assert len(loads) == 3
    cache.changed()  # logged, not raised: the change itself is committed


def test_an_unknown_key_is_not_kept(setup):
    cache, redis, now, loads, load = setup
    assert cache.fetch("nope", lambda: loads.append("miss")) is None
    assert cache.fetch("nope", lambda: loads.append("miss")) is None
    assert loads == ["miss", "miss"]


def test_a_row_read_while_a_change_commits_is_not_used_after_it(setup):
    """The generation is read before the row: a row read just before the change counted keeps the
    older number, so the next lookup reads again."""
    cache, redis, now, loads, load = setup

    def racing_load():
        redis.execute_command("INCR", "p:auth:generation")  # the change counts while the row is read
        return load("old")

    cache.fetch("h", racing_load)
    assert cache.fetch("h", lambda: load("new")) == "new"


def test_a_generation_redis_lost_does_not_bring_back_a_row_read_before_a_change():
    redis, now = _FakeRedis(), [100.0]
    cache = KeyCache(redis, "g", (_Redis,), clock=lambda: now[0])
    state = {"row": "active"}
    for _ in range(2):  # the first lookup starts the generation, the second keeps the row under it
        assert cache.fetch("h", lambda: state["row"]) == "active"
    other = KeyCache(redis, "g", (_Redis,), clock=lambda: now[0])
    state["row"] = "revoked"
    other.changed()  # the revocation, on another worker
    redis.value = None  # Redis restarts empty (or evicts the key)
    now[0] += 1
    assert cache.fetch("h", lambda: state["row"]) == "revoked"
    assert cache.fetch("h", lambda: state["row"]) == "revoked"
