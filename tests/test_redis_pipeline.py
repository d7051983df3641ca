"""Redis commands sent at the same moment by a worker's greenlets share one pipeline; each caller
gets its own reply or error, and a script Redis has lost is loaded again."""

from __future__ import annotations

import gevent
import pytest
import redis

from kyma.services import redis_pipeline
from kyma.services.redis_pipeline import Pipeliner
from kyma.services.window_stores import Check, RedisStore
from tests.backends import REDIS_URL, redis_prefix


@pytest.fixture()
def as_in_a_worker(monkeypatch):
    monkeypatch.setattr(redis_pipeline, "gevent_patched", lambda: True)


def test_commands_sent_at_once_share_one_round_trip_and_keep_their_order(as_in_a_worker):
    with redis_prefix() as prefix:
        client = redis.Redis.from_url(REDIS_URL)
        pipelines = []
        real = client.pipeline
        client.pipeline = lambda **kw: pipelines.append(kw) or real(**kw)
        pipeliner = Pipeliner(client)
        client.set(prefix + "text", "x")
        callers = [gevent.spawn(pipeliner.execute, "INCR", prefix + "n") for _ in range(5)]
        wrong = gevent.spawn(pipeliner.execute, "HGET", prefix + "text", "field")  # a string is no hash
        gevent.joinall([*callers, wrong], timeout=10)
        assert [c.value for c in callers] == [1, 2, 3, 4, 5]
        assert isinstance(wrong.exception, redis.ResponseError)  # that caller's error, nobody else's
        assert pipelines == [{"transaction": False}]
        assert pipeliner.execute("GET", prefix + "n") == b"5" and len(pipelines) == 2


def test_an_unreachable_redis_fails_every_waiting_caller(as_in_a_worker):
    pipeliner = Pipeliner(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2))
    callers = [gevent.spawn(pipeliner.execute, "GET", "k") for _ in range(3)]
    gevent.joinall(callers, timeout=10)
    assert all(isinstance(c.exception, redis.ConnectionError) for c in callers)


def test_a_script_redis_lost_is_loaded_again(as_in_a_worker):
    with redis_prefix() as prefix:
        store = RedisStore(REDIS_URL, prefix)
        store._consume.sha = "0" * 40  # as if Redis had restarted: no script by that hash
        ok, tats = gevent.spawn(store.consume, "lock", [Check("k", 10, 1)], 1_000_000).get(timeout=10)
        assert ok and tats == [0]
        assert store.peek(["k"], 1_000_000) == [1_000_000 + 6_000_000]


@pytest.mark.parametrize("where", ["queued", "sending"])
def test_callers_a_killed_sender_leaves_waiting_get_a_redis_error_and_the_next_call_a_new_sender(
        as_in_a_worker, where):
    pipeliner = Pipeliner(redis.Redis.from_url(REDIS_URL))
    assert gevent.spawn(pipeliner.execute, "PING").get(timeout=10) is True
    if where == "sending":  # the sender has taken the command and hangs before sending it
        pipeliner._send = lambda queued: gevent.sleep(60)
    caller = gevent.spawn(pipeliner.execute, "PING")
    waits: list = []
    for _ in range(1000):  # until the caller's command is queued, or taken by the (hanging) sender
        gevent.sleep(0)
        waits = pipeliner._sending if where == "sending" else pipeliner._queue
        if waits:
            break
    assert len(waits) == 1
    pipeliner._sender.kill()
    caller.join(timeout=10)
    try:
        assert caller.ready(), "the caller still waits for a sender that is gone"
        assert isinstance(caller.exception, redis.ConnectionError)  # what the stores already treat as Redis down
        pipeliner.__dict__.pop("_send", None)  # a sender that sends again
        assert gevent.spawn(pipeliner.execute, "PING").get(timeout=10) is True
    finally:
        caller.kill()


def test_a_caller_the_killed_sender_leaves_waiting_is_answered_when_a_new_call_comes_first(as_in_a_worker):
    pipeliner = Pipeliner(redis.Redis.from_url(REDIS_URL))
    assert gevent.spawn(pipeliner.execute, "PING").get(timeout=10) is True
    pipeliner._send = lambda queued: gevent.sleep(60)  # the sender takes the command and hangs
    caller = gevent.spawn(pipeliner.execute, "PING")
    for _ in range(1000):
        gevent.sleep(0)
        if pipeliner._sending:
            break
    assert len(pipeliner._sending) == 1
    pipeliner._sender.kill(block=False)
    pipeliner.__dict__.pop("_send", None)
    # Another greenlet calls before the dead sender's link callback has run: it starts a new sender.
    newcomer = gevent.spawn(pipeliner.execute, "PING")
    try:
        assert newcomer.get(timeout=10) is True
        caller.join(timeout=3)
        assert caller.ready(), "the caller waits forever: the new sender dropped its reply"
    finally:
        caller.kill()
