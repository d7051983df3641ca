"""The stream relay's own clock: keep-alives while the upstream is silent, the first-content deadline
(with fallback) and the total stream limit, against scripted upstreams (no network; a clock that moves
only while the script sleeps, so every duration below is exact)."""

from __future__ import annotations

import pytest

from kyma.errors import KymaError, UpstreamTimeout
from kyma.models import Account, RequestLog
from kyma.providers.base import UpstreamFailure, UpstreamStream
from kyma.runtime import runtime
from kyma.chat.admission import prepare
from kyma.chat.call import ChatCall
from kyma.services import ledger
from kyma.services.accounts import Principal
from kyma.chat.events import Chunk, Done, Failed, KeepAlive
from kyma.chat.stream import ChatStream
from tests.clock import FakeClock

LEAD = {"id": "u", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}


def content(text: str, finish: str | None = None) -> dict:
    return {"id": "u", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


class Scripted(UpstreamStream):
    """An upstream that follows a script: ("silence", s), ("chunk", dict) or ("every", s, dict) for 300 times."""

    def __init__(self, script, clock: FakeClock):
        self.script = script
        self.clock = clock
        self.closed = False

    def wait_headers(self, timeout: float) -> bool:
        return True

    def chunks(self, wake):
        for step in self.script:
            if step[0] == "silence":
                end = self.clock() + step[1]
                while self.clock() < end:
                    self.clock.sleep(max(0.001, min(end - self.clock(), wake())))  # as a socket timeout would
                    if self.clock() < end:
                        yield None
            elif step[0] == "chunk":
                yield step[1]
            elif step[0] == "late":  # a chunk that waited in the socket while the worker was busy elsewhere
                self.clock.sleep(step[1])
                yield step[2]
            elif step[0] == "break":
                raise UpstreamFailure("cut", "upstream connection broke mid-stream")
            else:
                for _ in range(300):  # bounded: a relay that ignores its limit ends (and fails the test)
                    self.clock.sleep(step[1])
                    yield step[2]

    def close(self) -> None:
        self.closed = True


class Adapter:
    """Hands out one scripted upstream per attempt, in order."""

    def __init__(self, *scripts):
        self.clock = FakeClock()
        self.streams = [Scripted(s, self.clock) for s in scripts]
        self.used = 0
        self.bodies: list[dict] = []

    def stream(self, route, body, headers, api_key):
        self.used += 1
        self.bodies.append(body)
        return self.streams[self.used - 1]


def timed(make_app, **settings):
    """An app with short limits and an account with credit, inside its context."""
    app = make_app(**{"keepalive_seconds": 0.05, "first_byte_timeout": 0.3, "first_token_timeout": 0.3,
                      "stream_max_seconds": 0.4, "breaker_failures": 1000, **settings})
    with app.app_context():
        account = Account.create(email="clock@example.com", password_hash="x", tier=4)
        ledger.add_credit(account.id, 5, kind="grant")
        yield runtime(), Principal(account.id, account.email, 4)


@pytest.fixture()
def timed_app(make_app):
    yield from timed(make_app)


@pytest.fixture()
def late_app(make_app):
    """A request deadline far shorter than its stream may last."""
    yield from timed(make_app, request_deadline=0.3, stream_max_seconds=10)


def start(rt, principal, adapter, keepalive: float = 0.05, **body) -> ChatStream:
    rt.upstreams.adapter = lambda route: adapter
    call = ChatCall("chat", body={"model": "qwen-3-32b", "stream": True, "max_tokens": 50,
                                  "messages": [{"role": "user", "content": "hi"}], **body})
    return ChatStream(rt, prepare(rt, call, principal), keepalive, clock=adapter.clock, sleep=adapter.clock.sleep)


def relayed(events) -> str:
    return "".join(c.data["choices"][0]["delta"].get("content") or "" for c in events
                   if isinstance(c, Chunk) and c.data["choices"])


ALONE = {"provider": {"only": ["sim-alpha"], "allow_fallbacks": False}}  # nobody to continue


def test_keep_alives_flow_while_the_upstream_is_silent_then_the_answer_relays(timed_app):
    rt, principal = timed_app
    stream = start(rt, principal, Adapter([("chunk", LEAD), ("silence", 0.2), ("chunk", content("Hi")),
                                           ("chunk", content("!", "stop"))]))
    assert stream.first() is False  # no content yet: the response starts with a keep-alive
    events = list(stream.events())
    assert sum(isinstance(e, KeepAlive) for e in events) >= 2
    chunks = [e.data for e in events if isinstance(e, Chunk)]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}  # the held-back lead goes first
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hi!"
    assert isinstance(events[-1], Done)
    assert RequestLog.get(RequestLog.request_id == stream.prep.call.request_id).status == 200


def test_an_upstream_with_no_content_by_the_deadline_falls_back_to_the_next_route(timed_app):
    rt, principal = timed_app
    adapter = Adapter([("chunk", LEAD), ("silence", 5)], [("chunk", content("ok", "stop"))])
    stream = start(rt, principal, adapter, keepalive=2.0)
    began = adapter.clock()
    assert stream.first() is True
    assert adapter.clock() - began == pytest.approx(0.3)  # the first-content deadline, not the silence
    assert adapter.used == 2 and adapter.streams[0].closed
    events = list(stream.events())
    assert isinstance(events[-1], Done)
    assert stream.served.attempts == 2


def test_keep_alives_already_sent_do_not_stop_a_failover_at_the_first_token_limit(timed_app):
    rt, principal = timed_app
    adapter = Adapter([("chunk", LEAD), ("silence", 5)], [("chunk", LEAD), ("chunk", content("late", "stop"))])
    stream = start(rt, principal, adapter, keepalive=0.05)
    assert stream.first() is False  # the client got a keep-alive: the response has started
    events = list(stream.events())
    assert sum(isinstance(e, KeepAlive) for e in events) >= 2
    text = "".join(c.data["choices"][0]["delta"].get("content") or "" for c in events
                   if isinstance(c, Chunk) and c.data["choices"])
    assert text == "late" and isinstance(events[-1], Done)
    assert adapter.used == 2 and adapter.streams[0].closed and stream.served.attempts == 2
    row = RequestLog.get(RequestLog.request_id == stream.prep.call.request_id)
    assert row.status == 200 and row.attempts == 2


def test_a_stream_that_never_goes_quiet_still_stops_at_the_total_limit(timed_app):
    rt, principal = timed_app
    adapter = Adapter([("chunk", content("a")), ("every", 0.01, content("b"))])
    stream = start(rt, principal, adapter, keepalive=1.0)
    began = adapter.clock()
    assert stream.first() is True
    events = list(stream.events())
    assert adapter.clock() - began == pytest.approx(0.4, abs=0.011)  # the total limit, not the 300 chunks
    assert isinstance(events[-1], Failed) and isinstance(events[-1].error, UpstreamTimeout)
    assert 35 <= sum(isinstance(e, Chunk) for e in events) <= 41  # one every 0.01 s until the limit
    row = RequestLog.get(RequestLog.request_id == stream.prep.call.request_id)
    assert row.status == 502 and row.completion_tokens > 0  # billed for what it relayed
    assert ledger.check_ledger() == []


class Broken(Adapter):
    """An adapter with a bug: it raises something no upstream failure is."""

    def stream(self, route, body, headers, api_key):
        raise KeyError("a bug")


def test_a_bug_before_the_start_is_an_error_that_releases_the_hold_and_is_logged(timed_app):
    rt, principal = timed_app
    stream = start(rt, principal, Broken(), keepalive=1.0)
    with pytest.raises(KymaError) as info:
        stream.first()
    assert info.value.status == 500
    row = RequestLog.get(RequestLog.request_id == stream.prep.call.request_id)
    assert row.status == 500 and "KeyError" in row.error
    assert ledger.balance(principal.account_id).held_micros == 0
    assert ledger.check_ledger() == []


def test_a_long_stream_that_breaks_after_the_request_deadline_is_still_continued(late_app):
    rt, principal = late_app
    adapter = Adapter([("chunk", LEAD), ("chunk", content("one ")), ("silence", 0.5), ("chunk", content("two ")),
                       ("break",)],
                      [("chunk", LEAD), ("chunk", content("three", "stop"))])
    stream = start(rt, principal, adapter, keepalive=1.0)
    assert stream.first() is True
    events = list(stream.events())
    text = "".join(c.data["choices"][0]["delta"].get("content") or "" for c in events
                   if isinstance(c, Chunk) and c.data["choices"])
    assert text == "one two three" and isinstance(events[-1], Done)
    assert events[-1].kyma["continued_by"]["provider"] == "sim-beta"
    row = RequestLog.get(RequestLog.request_id == stream.prep.call.request_id)
    assert row.status == 200 and row.attempts == 2 and row.note.startswith("continued by")
    assert ledger.check_ledger() == []


def test_a_failure_after_the_finish_leaves_the_whole_answer_and_asks_nobody_else(late_app):
    rt, principal = late_app
    adapter = Adapter([("chunk", LEAD), ("chunk", content("Hello.", "stop")), ("break",)])
    stream = start(rt, principal, adapter)
    assert stream.first() is True
    events = list(stream.events())
    assert relayed(events) == "Hello." and isinstance(events[-1], Done) and events[-1].kyma is None
    finishes = [ch["finish_reason"] for e in events if isinstance(e, Chunk) for ch in e.data["choices"]
                if ch.get("finish_reason")]
    assert finishes == ["stop"] and adapter.used == 1


def test_a_continuation_repeats_the_answer_text_only_never_the_reasoning(late_app):
    rt, principal = late_app
    thinking = {"id": "u", "choices": [{"index": 0, "delta": {"reasoning_content": "THINKING"}}]}
    adapter = Adapter([("chunk", LEAD), ("chunk", thinking), ("chunk", content("Answer ")), ("break",)],
                      [("chunk", LEAD), ("chunk", content("done", "stop"))])
    stream = start(rt, principal, adapter)
    events = list(stream.events()) if stream.first() else []
    assert relayed(events) == "Answer done"
    assert adapter.bodies[1]["messages"][-1] == {"role": "assistant", "content": "Answer "}
    assert adapter.bodies[1]["max_tokens"] < 50  # what is left of the answer's budget


def test_a_clients_own_prefill_is_extended_not_doubled(late_app):
    rt, principal = late_app
    adapter = Adapter([("chunk", LEAD), ("chunk", content("two ")), ("break",)],
                      [("chunk", LEAD), ("chunk", content("three", "stop"))])
    stream = start(rt, principal, adapter, messages=[{"role": "user", "content": "count"},
                                                     {"role": "assistant", "content": "one "}])
    events = list(stream.events()) if stream.first() else []
    assert relayed(events) == "two three"
    sent = adapter.bodies[1]["messages"]
    assert sent[-1] == {"role": "assistant", "content": "one two "} and sent[-2]["role"] == "user"


def test_an_answer_that_only_lacked_its_finish_still_gets_one_when_nobody_can_continue(late_app):
    rt, principal = late_app
    adapter = Adapter([("chunk", LEAD), ("chunk", content("Almost"))])  # then [DONE], no finish
    stream = start(rt, principal, adapter, stream_options={"include_usage": True}, **ALONE)
    events = list(stream.events()) if stream.first() else []
    finishes = [ch["finish_reason"] for e in events if isinstance(e, Chunk) for ch in e.data["choices"]
                if ch.get("finish_reason")]
    assert relayed(events) == "Almost" and finishes == ["stop"] and isinstance(events[-1], Done)
    row = RequestLog.get(RequestLog.request_id == stream.prep.call.request_id)
    assert row.status == 200 and "without a finish reason" in row.note


def test_an_answer_that_broke_at_its_token_limit_ends_as_a_length_finish(late_app):
    rt, principal = late_app
    adapter = Adapter([("chunk", LEAD), ("chunk", content("one two three four five six")), ("break",)])
    stream = start(rt, principal, adapter, max_tokens=3)
    events = list(stream.events()) if stream.first() else []
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "length" and adapter.used == 1


class OnePacket(Scripted):
    """An upstream whose whole answer arrived at once: `backlog` counts the events still unread
    ([DONE] included), as the HTTP adapter counts those decoded from one read."""

    def chunks(self, wake):
        steps = [step[1] for step in self.script]
        for i, chunk in enumerate(steps):
            self.backlog = len(steps) - i
            yield chunk
        self.backlog = 0


def test_the_first_chunk_of_an_answer_sent_in_one_packet_goes_out_before_the_rest_and_the_settling(timed_app):
    from kyma.api.chat import openai_sse
    from kyma.api.sse import coalesced

    rt, principal = timed_app
    adapter = Adapter([])
    adapter.streams = [OnePacket([("chunk", LEAD), ("chunk", content("one ")), ("chunk", content("two ")),
                                  ("chunk", content("three", "stop"))], adapter.clock)]
    stream = start(rt, principal, adapter)
    assert stream.first()
    writes = coalesced(openai_sse(stream), stream.more_ready)
    first = next(writes)
    assert b'"role":"assistant"' in first and b"one " in first and b"two" not in first
    assert not RequestLog.select().where(RequestLog.request_id == stream.prep.call.request_id).exists()
    rest = list(writes)
    assert len(rest) == 1  # what came together afterwards still shares one write
    assert b"two " in rest[0] and b"three" in rest[0] and rest[0].endswith(b"data: [DONE]\n\n")
    assert RequestLog.get(RequestLog.request_id == stream.prep.call.request_id).status == 200


def test_content_that_arrived_is_taken_though_the_worker_read_it_after_the_first_token_limit(timed_app):
    """A worker short of CPU may get to a waiting chunk late: that is not the upstream's slowness, so
    the attempt is neither failed nor counted against its route."""
    rt, principal = timed_app
    adapter = Adapter([("chunk", LEAD), ("late", 5, content("on time", "stop"))], [("chunk", content("other"))])
    stream = start(rt, principal, adapter, **ALONE)
    assert stream.first() is True and adapter.used == 1
    events = list(stream.events())
    assert relayed(events) == "on time" and isinstance(events[-1], Done)
    assert stream.attempts.tried == 1


def test_a_lead_chunk_after_the_first_token_limit_still_fails_the_attempt(timed_app):
    rt, principal = timed_app
    adapter = Adapter([("chunk", LEAD), ("late", 5, LEAD), ("chunk", content("never"))])
    stream = start(rt, principal, adapter, **ALONE)
    with pytest.raises(KymaError):
        stream.first()
