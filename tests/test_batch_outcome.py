"""PostgreSQL's batched writes when their COMMIT's outcome is unknown: what landed is not written again,
what did not land is, and a writer's miscount after a commit runs nothing twice.

Only PostgreSQL writes batches (SQLite runs each unit's work in the group's transaction), so these
run there. The faults are injected where the connection would fail: after the server has committed
(its answer lost) or before anything was sent."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import peewee
import psycopg
import pytest
from gevent.event import AsyncResult

from kyma.db import database, wrote_nothing
from kyma.models import Hold, LedgerEntry, RequestLog
from kyma.services import group_commit, group_settle, landed, ledger
from kyma.services.recording import RequestRecord, finish, settle_batch
from tests.accounts import make_account
from tests.backends import pg_db  # noqa: F401
from tests.lost_answer import LOST, lost
from tests.records import served_record

pytestmark = pytest.mark.postgres


def _finished(record: RequestRecord, held: bool = True) -> group_commit._Unit:
    return group_commit._Unit(lambda: finish(record, held=held), AsyncResult(), batch=settle_batch(record, held=held))


def _hold(acct: int, request_id: str, micros: int) -> group_commit._Unit:
    wanted = ledger.HoldRequest(acct, request_id, micros, 60)
    return group_commit._Unit(lambda: ledger.place_hold(acct, request_id, micros, ttl_seconds=60), AsyncResult(),
                              batch=group_commit.Batch(ledger.place_holds, wanted, landed.holds_placed))


@contextmanager
def _answer_lost_after_commit():
    """Every pipeline (a batch's writes and their COMMIT) runs and commits, then its answer is lost."""
    db = database.obj
    with db.connection_context(), pytest.MonkeyPatch.context() as patch:
        conn = db.connection()
        patch.setattr(db, "connection", lambda: _FaultyConnection(conn, "after"))
        yield


class _FaultyConnection:
    """A psycopg connection whose pipeline fails: before anything is sent, or after its COMMIT was."""

    def __init__(self, conn, when: str):
        self._conn, self._when = conn, when

    def __getattr__(self, name):
        return getattr(self._conn, name)

    @contextmanager
    def pipeline(self):
        if self._when == "before":
            raise psycopg.OperationalError(LOST)
        with self._conn.pipeline() as pipe:
            yield pipe
        raise psycopg.OperationalError(LOST)  # sent and committed; the answers never came


def _settled_rows(acct: int, request_ids: list[str]) -> None:
    assert RequestLog.select().where(RequestLog.request_id.in_(request_ids)).count() == len(request_ids)
    for rid in request_ids:
        kinds = [e.kind for e in LedgerEntry.select().where(LedgerEntry.request_id == rid).order_by(LedgerEntry.id)]
        assert kinds == ["hold", "release", "usage"], (rid, kinds)
    assert ledger.balance(acct).balance_micros == 1_000_000 - 1234 * len(request_ids)
    assert ledger.check_ledger() == []


def test_the_faults_are_told_apart_from_a_refused_statement(pg_db):
    assert not wrote_nothing(lost())
    with pytest.raises(peewee.IntegrityError) as refused:
        database.obj.execute_sql('INSERT INTO "hold" ("id") VALUES (NULL)')
    assert wrote_nothing(refused.value)


def test_a_settle_batch_whose_commit_landed_is_not_written_again(pg_db):
    acct = make_account(1_000_000)
    for rid in ("a", "b"):
        assert ledger.place_hold(acct, rid, 5000)
    group = [_finished(served_record("a", acct, outcomes=[])), _finished(served_record("b", acct, outcomes=[])),
             _finished(RequestRecord(request_id="refused", endpoint="chat.completions", status=402, account=acct),
                       held=False)]
    with _answer_lost_after_commit():
        group_commit.commit_group(group)
    assert [unit.result.get() for unit in group] == [True, True, False]
    _settled_rows(acct, ["a", "b"])
    assert RequestLog.select().count() == 3


def test_a_settle_batch_lost_before_it_was_sent_is_written_unit_by_unit(pg_db):
    acct = make_account(1_000_000)
    for rid in ("a", "b"):
        assert ledger.place_hold(acct, rid, 5000)
    group = [_finished(served_record("a", acct, outcomes=[])), _finished(served_record("b", acct, outcomes=[]))]

    def never_sent(items):
        raise lost()

    for unit in group:
        unit.batch = group_commit.Batch(never_sent, unit.batch.item, unit.batch.landed)
    group_commit.commit_group(group)
    assert [unit.result.get() for unit in group] == [True, True]
    _settled_rows(acct, ["a", "b"])


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_hold_batch_whose_commit_may_have_landed_holds_each_request_once(pg_db, monkeypatch, when):
    acct = make_account(1_000_000)
    db = database.obj
    with db.connection_context():
        conn = db.connection()
        monkeypatch.setattr(db, "connection", lambda: _FaultyConnection(conn, when))
        group = [_hold(acct, "h1", 400_000), _hold(acct, "h2", 400_000), _hold(acct, "h3", 400_000)]
        group_commit.commit_group(group)
        monkeypatch.undo()
        assert [unit.result.get() for unit in group] == [True, True, False]  # the third never fitted
        assert sorted(h.request_id for h in Hold.select()) == ["h1", "h2"]
        assert ledger.balance(acct).balance_micros == 200_000 and ledger.check_ledger() == []


def test_a_writer_that_miscounts_after_its_commit_runs_nothing_twice(pg_db, caplog):
    acct = make_account(1_000_000)
    for rid in ("a", "b"):
        assert ledger.place_hold(acct, rid, 5000)

    def miscounts(items):
        return group_settle.finish_many(items)[:-1]

    group = [_finished(served_record(rid, acct, outcomes=[])) for rid in ("a", "b")]
    for unit in group:
        unit.batch = group_commit.Batch(miscounts, unit.batch.item, unit.batch.landed)
    with caplog.at_level(logging.INFO, logger=group_commit.__name__):
        group_commit.commit_group(group)
    assert [unit.result.get() for unit in group] == [True, True]
    _settled_rows(acct, ["a", "b"])
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "miscounts gave 1 results for 2 units" in errors[0].getMessage()


def test_without_a_way_to_tell_a_batch_of_unknown_outcome_fails_rather_than_runs_twice(pg_db):
    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "a", 5000)
    record = served_record("a", acct, outcomes=[])
    runs = []
    unit = group_commit._Unit(lambda: runs.append(1), AsyncResult(),
                              batch=group_commit.Batch(group_settle.finish_many, group_settle.Finished(record, True)))
    with _answer_lost_after_commit():
        group_commit.commit_group([unit])
    with pytest.raises(peewee.OperationalError):
        unit.result.get()
    assert runs == [] and RequestLog.select().count() == 1


def test_a_cancelled_statement_wrote_nothing_and_a_shutdown_may_have_committed(pg_db):
    with pytest.raises(peewee.DatabaseError) as cancelled:
        with database.obj.atomic():
            database.obj.execute_sql("SET LOCAL statement_timeout = 1")
            database.obj.execute_sql("SELECT pg_sleep(1)")
    assert wrote_nothing(cancelled.value)
    assert not wrote_nothing(peewee.OperationalError(psycopg.errors.AdminShutdown("terminating connection")))


def test_a_connection_killed_after_the_settle_committed_settles_each_request_once(pg_db, caplog):
    """A real fault: the server ends the session right after the batch's statement committed."""
    acct = make_account(1_000_000)
    for rid in ("a", "b"):
        assert ledger.place_hold(acct, rid, 5000)

    def then_killed(items):
        values = group_settle.finish_many(items)
        database.obj.execute_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        return values

    group = [_finished(served_record(rid, acct, outcomes=[])) for rid in ("a", "b")]
    for unit in group:
        unit.batch = group_commit.Batch(then_killed, unit.batch.item, unit.batch.landed)
    database.obj.close()  # the batch opens its own connection, as the flusher's does
    with caplog.at_level(logging.WARNING, logger=group_commit.__name__):
        group_commit.commit_group(group)
    assert [unit.result.get() for unit in group] == [True, True]
    assert any("looking up which landed" in r.getMessage() for r in caplog.records)
    _settled_rows(acct, ["a", "b"])
