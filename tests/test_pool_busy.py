"""A worker whose database connections are all in use answers 503 with Retry-After, in each protocol's shape."""

from __future__ import annotations

import threading

import pytest
from playhouse.pool import MaxConnectionsExceeded

from kyma.api import chat, messages


@pytest.fixture()
def exhausted(monkeypatch):
    def busy(_request):
        raise MaxConnectionsExceeded("Max connections exceeded, timed out attempting to connect.")

    monkeypatch.setattr(chat, "principal_from_request", busy)
    monkeypatch.setattr(messages, "principal_from_request", busy)


def test_an_openai_client_is_told_to_retry(client, exhausted):
    r = client.post("/v1/chat/completions", headers={"Authorization": "Bearer ky-x"},
                    json={"model": "kimi-k2.5", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.get_json()["error"]["code"] == "gateway_busy"
    assert "not billed" in r.get_json()["error"]["message"]


def test_an_anthropic_client_is_told_it_is_overloaded(client, exhausted):
    r = client.post("/v1/messages", headers={"x-api-key": "ky-x", "anthropic-version": "2023-06-01"},
                    json={"model": "kimi-k2.5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 529
    assert r.headers["Retry-After"] == "1"
    assert r.get_json()["error"]["type"] == "overloaded_error"


class _PoolHog:
    """A thread that takes the pool's only connection when asked and keeps it until told to give it back."""

    def __init__(self):
        self.asked, self.taken, self.done = threading.Event(), threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from kyma.db import database

        self.asked.wait()
        while True:  # a request may hold the connection for a moment: wait it out
            try:
                database.obj.connect()
                break
            except MaxConnectionsExceeded:
                continue
        self.taken.set()
        self.done.wait()
        database.obj.close()

    def take(self) -> None:
        self.asked.set()
        self.taken.wait(30)

    def give_back(self) -> None:
        self.done.set()
        self.thread.join(30)


@pytest.mark.postgres
def test_a_burst_that_fills_the_pool_leaves_a_row_per_request_and_no_hold_open(make_app, monkeypatch, tmp_path):
    import openai

    from kyma import chat as pipeline
    from kyma import db
    from kyma.db import release_connection
    from kyma.models import Hold, LedgerEntry, RequestLog
    from kyma.services import deferred, ledger
    from tests.backends import schema_on
    from tests.conftest import register
    from tests.test_unexpected_errors import CHAT, _sdks

    monkeypatch.setattr(db, "POOL_WAIT_SECONDS", 0.05)
    with schema_on("postgres", tmp_path) as url:
        app = make_app(database_url=url, database_pool_size=1, signup_max_per_hour=100000,
                       allowed_hosts=("localhost",))
        reg = register(app.test_client(), "busy@example.com")
        account = int(reg["user_id"])
        with app.app_context():
            start = ledger.balance(account).balance_micros
            db.close_connection()  # the pool's one connection is the requests' to share
        hog, real = _PoolHog(), pipeline.complete

        def then_the_pool_fills(rt, prep):
            # The hold is committed; from here on every connection is taken, so settling it cannot connect.
            release_connection()
            hog.take()
            return real(rt, prep)

        monkeypatch.setattr("kyma.chat.complete", then_the_pool_fills)
        answers: list = []

        def ask() -> None:
            oai, _ = _sdks(app, reg["api_key"])
            try:
                oai.chat.completions.create(**CHAT)
            except openai.APIStatusError as exc:
                answers.append((exc.status_code, exc.response.headers.get("Retry-After"),
                                exc.response.headers["X-Request-Id"]))

        burst = [threading.Thread(target=ask) for _ in range(8)]
        for t in burst:
            t.start()
        for t in burst:
            t.join(60)
        assert [(status, retry) for status, retry, _ in answers] == [(503, "1")] * 8
        assert deferred.pending() > 0, "the 503s did not wait for a connection to write their rows"
        hog.give_back()
        assert deferred.drain(30), "the queued rows were written once the pool had a free connection"
        with app.app_context():
            for _, _, rid in answers:
                rows = list(RequestLog.select(RequestLog.status, RequestLog.error_code, RequestLog.account_id)
                            .where(RequestLog.request_id == rid).tuples())
                assert len(rows) == 1 and rows[0][:2] == (503, "gateway_busy"), rid
            held = [e.request_id for e in LedgerEntry.select().where(LedgerEntry.kind == "hold")]
            assert held, "at least the first request took its hold before the pool filled"
            assert set(held) <= {rid for _, _, rid in answers}
            assert Hold.select().where(Hold.closed_at.is_null()).count() == 0, "no hold is left to the reaper"
            assert ledger.balance(account).balance_micros == start
            assert ledger.check_ledger() == []


@pytest.mark.integration
@pytest.mark.postgres
def test_under_gevent_the_rows_of_a_burst_are_written_once_the_pool_frees(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tests.backends import postgres_url

    with postgres_url() as url:
        done = subprocess.run([sys.executable, "-m", "tests.pool_burst_gevent", url, str(tmp_path)],
                              capture_output=True, text=True, timeout=180, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    left = json.loads(done.stdout.strip().splitlines()[-1])
    assert (left["answers"], left["count"]) == ([[503, "1"]], 20)
    assert left["owed"] > 0, "the 503s did not wait for a connection to write their rows"
    assert left["drained"] and left["rows"] == [1] * 20, "one row per request, once a connection was free"
    assert left["holds_taken"] >= 1 and left["open_holds"] == 0 and left["balance_back"] and left["check"] == []


def test_a_served_request_that_finds_the_pool_full_is_charged_later_not_given_back(sqlite_db, monkeypatch):
    """The settlement of an answered request is queued, not handed to the busy handler as abandoned."""
    from types import SimpleNamespace

    from kyma.chat import records
    from kyma.db import write_transaction
    from kyma.models import Account, LedgerEntry
    from kyma.services import deferred, group_commit, ledger
    from kyma.services.recording import RequestRecord

    acct = Account.create(email="busy@example.com", password_hash="x").id
    ledger.add_credit(acct, 1.0, kind="grant")
    assert ledger.place_hold(acct, "served-1", 100_000)
    queued = []

    def full(*_args, **_kwargs):
        raise MaxConnectionsExceeded("every connection is in use")

    monkeypatch.setattr(group_commit, "run", full)
    monkeypatch.setattr(deferred, "submit",
                        lambda rid, work, after=None, landed=None, locks=None: queued.append((rid, work)) or True)
    limiter = SimpleNamespace(in_database=True, record_tokens=lambda *a, **k: None)
    call = SimpleNamespace(record=None)
    prep = SimpleNamespace(call=call, hold_micros=100_000, admission=SimpleNamespace(tokens_reserved=0, reserved_at=0),
                           principal=SimpleNamespace(account_id=acct, api_key_id=None, key_limit_micros=None))
    record = RequestRecord(request_id="served-1", endpoint="chat", status=200, account=acct,
                           model_served="glm-4.5-air", cost_micros=30_000)
    records._finish(SimpleNamespace(limiter=limiter), prep, record, 10)
    assert call.record is record  # the busy handler will not log it again as abandoned
    assert [rid for rid, _ in queued] == ["served-1"]
    with write_transaction():
        queued[0][1]()  # what the deferred writer runs once a connection frees
    assert ledger.balance(acct).balance_micros == 1_000_000 - 30_000
    assert [e.kind for e in LedgerEntry.select().where(LedgerEntry.request_id == "served-1")
            .order_by(LedgerEntry.id)] == ["hold", "release", "usage"]
    assert ledger.check_ledger() == []
