"""recording.finish and the ledger's raw-SQL hot path store rows exactly as the peewee models read them."""

from __future__ import annotations

import re

import pytest
from peewee import IntegrityError

from kyma.models import Hold, LedgerEntry, RequestLog, RouteOutcome
from kyma.services import ledger
from kyma.services.recording import AttemptRecord, RequestRecord, finish
from tests.accounts import make_account
from tests.records import check_round_trip, served_record

# What peewee + sqlite3 write for a DateTimeField (microseconds are omitted when they are zero).
PEEWEE_DATETIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?$")


def test_finish_settles_and_logs_rows_the_models_read_back(backend_db):
    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "r1", 5000, owner="test:1")
    finish(served_record("r1", acct), held=True)
    check_round_trip(acct)
    assert ledger.settle_hold("r1", 1) is None  # exactly once


def test_sqlite_datetimes_and_booleans_are_stored_as_peewee_stores_them(sqlite_db):
    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "r1", 5000)
    finish(served_record("r1", acct), held=True)
    raw = sqlite_db.execute_sql(
        'SELECT h."created_at", h."expires_at", h."closed_at", r."created_at", r."simulated", r."stream", '
        'typeof(r."simulated") FROM "hold" h JOIN "requestlog" r ON r."request_id" = h."request_id"').fetchone()
    assert all(isinstance(v, str) and PEEWEE_DATETIME.match(v) for v in raw[:4]), raw
    assert raw[4:] == (1, 1, "integer")
    # A row written by peewee itself has the same shape, so old and new rows sort and compare alike.
    peewee_written = sqlite_db.execute_sql('SELECT "created_at" FROM "account" WHERE "id" = ?', (acct,)).fetchone()
    assert PEEWEE_DATETIME.match(peewee_written[0])
    entry_times = [row[0] for row in sqlite_db.execute_sql('SELECT "created_at" FROM "ledgerentry"')]
    assert all(PEEWEE_DATETIME.match(t) for t in entry_times)


def test_finish_without_a_served_model_releases_the_hold(sqlite_db):
    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "r2", 7000)
    finish(RequestRecord(request_id="r2", endpoint="chat.completions", status=502, account=acct,
                         error="e" * 1500, error_code="upstream_error", outcomes=[AttemptRecord("m0", "p0", False, 502, "", 3.0)]), held=True)
    release = LedgerEntry.get((LedgerEntry.request_id == "r2") & (LedgerEntry.kind == "release"))
    assert (release.amount_micros, release.note) == (7000, "request failed")
    assert LedgerEntry.select().where(LedgerEntry.kind == "usage").count() == 0
    log = RequestLog.get(RequestLog.request_id == "r2")
    assert len(log.error) == 1000 and log.simulated is False and log.stream is False
    assert log.error_code == "upstream_error"
    assert RouteOutcome.get().error is None  # an empty error is stored as NULL, as before
    assert ledger.balance(acct).balance_micros == 1_000_000


def test_finish_is_atomic_a_failed_log_insert_undoes_the_settle(sqlite_db):
    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "dup", 5000)
    finish(RequestRecord(request_id="dup", endpoint="chat.completions", status=200, account=acct), held=False)
    with pytest.raises(IntegrityError):  # the request-log row for "dup" exists already
        finish(served_record("dup", acct), held=True)
    assert Hold.get(Hold.request_id == "dup").closed_at is None
    assert LedgerEntry.select().where(LedgerEntry.kind == "usage").count() == 0
    assert RouteOutcome.select().count() == 0
    assert ledger.balance(acct).balance_micros == 1_000_000 - 5000
    assert ledger.check_ledger() == []


def test_a_duplicate_hold_is_refused_and_debits_nothing(sqlite_db):
    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "same", 100)
    with pytest.raises(IntegrityError):
        ledger.place_hold(acct, "same", 100)
    assert ledger.balance(acct).balance_micros == 1_000_000 - 100
    assert ledger.check_ledger() == []


def test_a_failed_mark_cuts_its_error_and_code_to_their_columns(backend_db):
    from kyma.services.recording import mark_failed

    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "r1", 5000)
    record = served_record("r1", acct)
    finish(record, held=True)
    mark_failed(record, 500, "e" * 1500, "c" * 100)
    row = RequestLog.get(RequestLog.request_id == "r1")
    assert (row.status, row.error, row.error_code, row.cost_micros) == (500, "e" * 1000, "c" * 64, 1234)


@pytest.mark.parametrize("how", ["now", "later", "busy"])
def test_a_record_is_committed_or_queued_then_announced_once(sqlite_db, monkeypatch, how):
    from playhouse.pool import MaxConnectionsExceeded

    from kyma.services import deferred, group_commit, recording

    seen, queued = [], []
    monkeypatch.setattr(recording, "announce", lambda r: seen.append(("announced", r.request_id)))
    monkeypatch.setattr(deferred, "submit",
                        lambda rid, work, after=None, landed=None, locks=None: queued.append((rid, work, after)) or True)
    if how == "busy":
        monkeypatch.setattr(group_commit, "run", lambda *a, **k: (_ for _ in ()).throw(MaxConnectionsExceeded("full")))
    record = RequestRecord(request_id="x1", endpoint="chat.completions", status=402)
    recording.commit(record, lambda: seen.append(("written", "x1")), later=how == "later", queue_if_busy=True)
    if how == "now":
        assert seen == [("written", "x1"), ("announced", "x1")] and queued == []
        return
    assert seen == [] and [rid for rid, *_ in queued] == ["x1"]
    _, work, after = queued[0]
    work()
    after()  # what the deferred writer does once a connection frees
    assert seen == [("written", "x1"), ("announced", "x1")]


def test_a_full_pool_propagates_unless_the_record_may_wait(sqlite_db, monkeypatch):
    from playhouse.pool import MaxConnectionsExceeded

    from kyma.services import deferred, group_commit, recording

    def full(*_a, **_k):
        raise MaxConnectionsExceeded("full")

    monkeypatch.setattr(group_commit, "run", full)
    monkeypatch.setattr(deferred, "submit", lambda *a, **k: pytest.fail("queued"))
    with pytest.raises(MaxConnectionsExceeded):
        recording.commit(RequestRecord(request_id="x2", endpoint="chat.completions", status=402), lambda: None)
