"""A group transaction whose COMMIT's outcome is unknown: the units that landed keep what their work
returned, the others run once more, and a unit that cannot tell fails rather than run twice. The
deferred writer's batch tells when each of its writes can.

The faults hit the COMMIT itself: its answer lost after the server committed, or the connection lost
before it was sent.
"""

from __future__ import annotations

import peewee
import psycopg
import pytest
from gevent.event import AsyncResult

from kyma.db import database
from kyma.models import Hold, RequestLog
from kyma.services import deferred, group_commit, landed, ledger
from kyma.services.recording import RequestRecord, finish
from tests.test_recording import funded_account

_LOST = "consuming input failed: server closed the connection unexpectedly"


@pytest.fixture()
def pg_db():
    from tests.backends import postgres_schema

    with postgres_schema():
        yield


def _fail_first_commit(monkeypatch, when: str) -> None:
    """The next COMMIT fails: `after` the server committed (its answer lost) or `before` it was sent.
    Later COMMITs run as usual."""
    db = database.obj
    real = db.commit
    fired = []

    def commit():
        if fired:
            return real()
        fired.append(when)
        if when == "before":
            raise peewee.OperationalError(psycopg.OperationalError(_LOST))
        real()
        raise peewee.OperationalError(psycopg.OperationalError(_LOST))

    monkeypatch.setattr(db, "commit", commit)


@pytest.mark.postgres
def test_a_lone_unit_whose_commit_landed_gets_its_result(pg_db, monkeypatch):
    acct = funded_account()
    runs = []

    def admit():
        runs.append(1)
        return ledger.place_hold(acct, "h1", 2000)

    unit = group_commit._Unit(admit, AsyncResult(), True, landed=group_commit.Landed(landed.held, "h1"))
    _fail_first_commit(monkeypatch, "after")
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
    _fail_first_commit(monkeypatch, when)
    group_commit.commit_group([unit])
    assert unit.result.get(timeout=0) == [False, False, False]
    assert len(runs) == (1 if when == "after" else 2)
    assert RequestLog.select().count() == 3
