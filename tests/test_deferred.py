"""The deferred writer empties a long queue in bounded transactions, each write committed once."""

from __future__ import annotations

import threading

from kyma.models import RequestLog
from kyma.services import deferred, group_commit, recording
from kyma.services.recording import RequestRecord, finish


def test_a_long_queue_is_written_in_bounded_batches(backend_db, monkeypatch):
    sizes: list[int] = []
    gate = threading.Event()
    real = group_commit.run

    def counted(work, **kw):
        gate.wait(10)  # hold the writer until the whole queue is in
        result = real(work, **kw)
        sizes.append(len(result))
        return result

    monkeypatch.setattr(group_commit, "run", counted)
    monkeypatch.setattr(deferred, "_writer", None)  # this test's writer, not one an earlier test started
    total = 2 * deferred.BATCH + 50
    announced = []
    for i in range(total):
        record = RequestRecord(request_id=f"q{i}", endpoint="chat.completions", status=503)
        assert deferred.submit(record.request_id, lambda r=record: finish(r, held=False),
                               lambda r=record: announced.append(r.request_id))
    gate.set()
    assert deferred.drain(60)
    assert sum(sizes) == total and max(sizes) <= deferred.BATCH
    assert RequestLog.select().count() == total and len(announced) == total


def test_a_deferred_write_outlives_a_database_that_is_briefly_unreachable(backend_db, monkeypatch):
    from peewee import OperationalError

    real = group_commit.run
    failures = [OperationalError("server closed the connection unexpectedly")]  # a restart, once

    def flaky(work, **kw):
        if failures:
            raise failures.pop()
        return real(work, **kw)

    monkeypatch.setattr(group_commit, "run", flaky)
    monkeypatch.setattr(deferred, "_writer", None)
    record = RequestRecord(request_id="outage", endpoint="chat.completions", status=200)
    assert deferred.submit(record.request_id, lambda: finish(record, held=False))
    assert deferred.drain(30)
    assert RequestLog.select().where(RequestLog.request_id == "outage").count() == 1, "the write was dropped"


def test_a_batch_whose_commit_answer_was_lost_is_looked_up_before_it_runs_again(backend_db, monkeypatch):
    from tests.lost_answer import lost

    real, calls, announced = group_commit.run, [], []

    def answer_lost_once(work, **kw):
        calls.append(1)
        result = real(work, **kw)
        if len(calls) == 1:
            raise lost()  # it committed; the answer, and the committer's own lookup, were lost
        return result

    monkeypatch.setattr(group_commit, "run", answer_lost_once)
    records = [RequestRecord(request_id=rid, endpoint="chat.completions", status=503) for rid in ("l1", "l2")]
    deferred._commit([deferred.Write(r.request_id, lambda r=r: finish(r, held=False),
                                     after=lambda r=r: announced.append(r.request_id),
                                     landed=recording.logged(r)) for r in records])
    assert len(calls) == 1, "the batch ran again although it had landed"
    assert announced == ["l1", "l2"]  # not dropped as failed writes
    assert RequestLog.select().where(RequestLog.request_id.in_(["l1", "l2"])).count() == 2


def test_a_deferred_batch_locks_every_row_its_writes_name(backend_db, monkeypatch):
    from kyma.services.row_locks import RowLocks

    locks, real = [], group_commit.run

    def seen(work, **kw):
        locks.append(kw["locks"])
        return real(work, **kw)

    monkeypatch.setattr(group_commit, "run", seen)
    records = [RequestRecord(request_id=rid, endpoint="chat.completions", status=503) for rid in ("d1", "d2")]
    # One batch, as the writer takes it from its queue (called directly: no thread decides the batches).
    deferred._commit([deferred.Write("d1", lambda: finish(records[0], held=False), locks=RowLocks((7,))),
                      deferred.Write("d2", lambda: finish(records[1], held=False), locks=RowLocks((3, 7), (9,)))])
    assert locks == [RowLocks((3, 7), (9,))]
    assert RequestLog.select().where(RequestLog.request_id.in_(["d1", "d2"])).count() == 2
