"""A group transaction whose COMMIT's outcome is unknown: the units that landed keep what their work
returned, the others run once more, and a unit that cannot tell fails rather than run twice.

The units are the ones the gateway commits as work, not as a Batch: an admission (isolated, it places
the hold), a settle-and-log, a request marked failed after it was logged, and the deferred writer's
batch. The faults hit the COMMIT itself: its answer lost after the server committed, the connection
lost before it was sent, the server ending the session right after it committed, a disk error (SQLite).
"""

from __future__ import annotations

import peewee
import pytest
from gevent.event import AsyncResult

from kyma.db import database
from kyma.models import Hold, LedgerEntry, RequestLog
from kyma.services import deferred, group_commit, landed, ledger, recording, row_locks
from kyma.services.recording import RequestRecord, finish
from tests.accounts import make_account
from tests.backends import pg_db, schema_on  # noqa: F401
from tests.lost_answer import fail_first_commit
from tests.records import served_record


def _captured(monkeypatch) -> list[group_commit._Unit]:
    """Units as recording.commit hands them to the group committer, to be committed by the test."""
    units: list[group_commit._Unit] = []

    def run(work, *, isolated=False, batch=None, landed=None, locks=row_locks.NONE):
        units.append(group_commit._Unit(work, AsyncResult(), isolated, batch, landed, locks))

    monkeypatch.setattr(group_commit, "run", run)
    return units


class _Group:
    """One of each unit the gateway commits as work, and how often each ran."""

    def __init__(self, monkeypatch):
        self.acct = make_account(1_000_000)
        self.runs: dict[str, int] = {}
        self.admitted = object()  # what an admission returns (its rate-limit headers)
        assert ledger.place_hold(self.acct, "s1", 5000)
        finish(served_record("m1", self.acct, outcomes=[]), held=False)  # logged, then found failed
        units = _captured(monkeypatch)
        settled = served_record("s1", self.acct, outcomes=[])
        recording.commit(settled, self._counted("s1", lambda: finish(settled, held=True)),
                         landed=recording.logged(settled), announced=False)
        recording.mark_failed(served_record("m1", self.acct), 502, "the stream broke", "upstream_error")
        units[-1].work = self._counted("m1", units[-1].work)
        monkeypatch.undo()
        self.units = [
            group_commit._Unit(self._counted("h1", self._admit), AsyncResult(), True,
                               landed=group_commit.Landed(landed.held, "h1")),
            group_commit._Unit(self._counted("h2", self._refused), AsyncResult(), True,
                               landed=group_commit.Landed(landed.held, "h2")),
            *units,
            group_commit._Unit(self._counted("n1", lambda: ledger.place_hold(self.acct, "n1", 1000)), AsyncResult()),
        ]

    def _counted(self, name, work):
        def counted():
            self.runs[name] = self.runs.get(name, 0) + 1
            return work()

        return counted

    def _admit(self):
        assert ledger.place_hold(self.acct, "h1", 2000)
        return self.admitted

    def _refused(self):
        assert ledger.place_hold(self.acct, "h2", 3000)
        raise LookupError("the key's limit refused it")

    def results(self) -> list:
        out = []
        for unit in self.units:
            try:
                out.append(unit.result.get(timeout=0))
            except Exception as exc:
                out.append(type(exc))
        return out

    def check_rows(self, *, unchecked_landed: bool) -> None:
        holds = sorted(h.request_id for h in Hold.select())
        assert holds == sorted(["h1", "s1"] + (["n1"] if unchecked_landed else []))
        kinds = [e.kind for e in LedgerEntry.select().where(LedgerEntry.request_id == "s1").order_by(LedgerEntry.id)]
        assert kinds == ["hold", "release", "usage"]
        assert RequestLog.select().where(RequestLog.request_id == "s1").count() == 1
        m1 = RequestLog.get(RequestLog.request_id == "m1")
        assert (m1.status, m1.error_code) == (502, "upstream_error")
        spent = 2000 + 1234 + (1000 if unchecked_landed else 0)
        assert ledger.balance(self.acct).balance_micros == 1_000_000 - spent
        assert ledger.check_ledger() == []


def _committed(monkeypatch, when: str, *, own_connection: bool = False) -> _Group:
    """A group whose first COMMIT fails `when`, committed: each unit ends as it must whatever the outcome."""
    group = _Group(monkeypatch)
    if own_connection:
        database.obj.close()  # the group opens its own connection, as the flusher's does
    fail_first_commit(monkeypatch, when)
    group_commit.commit_group(group.units)
    assert group.results() == [group.admitted, LookupError, True, None, peewee.OperationalError]
    return group


@pytest.mark.postgres
def test_a_group_whose_commit_landed_is_not_run_again(pg_db, monkeypatch):
    group = _committed(monkeypatch, "after")
    # The refusal wrote nothing either way, so it ran again alone; the unit that cannot tell did not.
    assert group.runs == {"h1": 1, "h2": 2, "s1": 1, "m1": 1, "n1": 1}
    group.check_rows(unchecked_landed=True)


@pytest.mark.postgres
@pytest.mark.parametrize("when", ["before", "killed"])
def test_a_group_whose_commit_outcome_is_unknown_lands_each_unit_once(pg_db, monkeypatch, when):
    group = _committed(monkeypatch, when, own_connection=True)
    again = 2 if when == "before" else 1  # lost before it was sent: nothing landed, each ran alone once more
    assert group.runs == {"h1": again, "h2": 2, "s1": again, "m1": again, "n1": 1}
    group.check_rows(unchecked_landed=when == "killed")


def _counted_hold(runs: list):
    """Work that places hold "h1" on a new account, counting its runs in `runs`."""
    acct = make_account(1_000_000)

    def hold() -> bool:
        runs.append(1)
        return ledger.place_hold(acct, "h1", 2000)

    return hold


@pytest.mark.postgres
def test_a_lone_unit_whose_commit_landed_gets_its_result(pg_db, monkeypatch):
    runs: list = []
    unit = group_commit._Unit(_counted_hold(runs), AsyncResult(), True, landed=group_commit.Landed(landed.held, "h1"))
    fail_first_commit(monkeypatch, "after")
    group_commit.commit_group([unit])
    assert unit.result.get(timeout=0) is True and runs == [1]
    assert [h.request_id for h in Hold.select()] == ["h1"] and ledger.check_ledger() == []


@pytest.mark.postgres
@pytest.mark.parametrize("when", ["after", "before"])
def test_a_deferred_batch_whose_commit_outcome_is_unknown_is_written_once(pg_db, monkeypatch, when):
    records = [RequestRecord(request_id=f"q{i}", endpoint="chat.completions", status=503) for i in range(3)]
    writes = [deferred.Write(r.request_id, lambda r=r: finish(r, held=False),
                             landed=group_commit.Landed(landed.logged, r.request_id)) for r in records]
    runs = []

    def work():
        runs.append(1)
        return [w.work() for w in writes]

    unit = group_commit._Unit(work, AsyncResult(), landed=deferred._landed(writes))
    fail_first_commit(monkeypatch, when)
    group_commit.commit_group([unit])
    assert unit.result.get(timeout=0) == [False, False, False]
    assert len(runs) == (1 if when == "after" else 2)
    assert RequestLog.select().count() == 3


def test_a_sqlite_commit_that_hit_a_disk_error_runs_its_units_again(sqlite_db, monkeypatch):
    group = _committed(monkeypatch, "disk")
    assert group.runs == {"h1": 2, "h2": 2, "s1": 2, "m1": 2, "n1": 1}
    group.check_rows(unchecked_landed=False)


# A disk error is SQLite's fault; a lost answer, PostgreSQL's.
@pytest.mark.parametrize("kind, when", [("sqlite", "disk"), pytest.param("postgres", "after", marks=pytest.mark.postgres),
                                        pytest.param("postgres", "before", marks=pytest.mark.postgres)])
def test_a_settlement_committed_alone_whose_commit_outcome_is_unknown_lands_once(tmp_path, monkeypatch, kind, when):
    """Outside a gevent worker (the CLI, a thread) and for units a failed group runs one by one, a unit
    commits alone: a lost COMMIT answer is looked up there too, not reported as a failure nor run twice."""
    with schema_on(kind, tmp_path):
        _settle_alone_with_unknown_commit(monkeypatch, when)


def _settle_alone_with_unknown_commit(monkeypatch, when: str) -> None:
    acct = make_account(1_000_000)
    record = served_record("s1", acct, outcomes=[])
    assert ledger.place_hold(acct, "s1", 5000)
    runs = []

    def settle():
        runs.append(1)
        return finish(record, held=True)

    fail_first_commit(monkeypatch, when)
    recording.commit(record, settle, landed=recording.logged(record), announced=False)
    assert len(runs) == (1 if when == "after" else 2)  # not landed: it ran again
    kinds = [e.kind for e in LedgerEntry.select().where(LedgerEntry.request_id == "s1").order_by(LedgerEntry.id)]
    assert kinds == ["hold", "release", "usage"] and RequestLog.select().count() == 1
    assert ledger.balance(acct).balance_micros == 1_000_000 - 1234 and ledger.check_ledger() == []


@pytest.mark.postgres
def test_a_unit_committed_alone_that_cannot_tell_gets_the_error(pg_db, monkeypatch):
    runs: list = []
    hold = _counted_hold(runs)
    fail_first_commit(monkeypatch, "after")
    with pytest.raises(peewee.OperationalError):
        group_commit.alone(hold)
    assert runs == [1] and [h.request_id for h in Hold.select()] == ["h1"]
