"""PostgreSQL's one-statement group settle writes the rows recording.finish writes, once, and a
group whose statement fails is committed unit by unit."""

from __future__ import annotations

import pytest
from gevent.event import AsyncResult

from kyma.models import Hold, LedgerEntry, RequestLog, RouteOutcome
from kyma.services import group_commit, ledger
from kyma.services.group_settle import _PLANNING_RUNS, Finished, finish_many
from kyma.services.recording import AttemptRecord, RequestRecord, finish
from tests.accounts import limited_key, make_account
from tests.backends import pg_db  # noqa: F401
from tests.lock_waits import waits_on_lock_only_at_the_lower
from tests.records import check_round_trip, served_record


def _failed(request_id: str, account: int) -> RequestRecord:
    return RequestRecord(request_id=request_id, endpoint="chat.completions", status=502, account=account,
                         error="e" * 1500, error_code="upstream_error",
                         outcomes=[AttemptRecord("m0", "p0", False, 502, "", 3.0)])


def _entries(request_id: str) -> list[tuple]:
    return [(e.kind, e.amount_micros, e.idempotency_key, e.note) for e in
            LedgerEntry.select().where(LedgerEntry.request_id == request_id).order_by(LedgerEntry.id)]


def test_one_statement_settles_releases_and_logs_a_group(pg_db):
    first, acct = make_account(1_000_000), make_account(1_000_000)
    assert ledger.place_hold(first, "r1", 5000, owner="test:1")
    assert ledger.place_hold(acct, "over", 1000)
    assert ledger.place_hold(acct, "failed", 7000)
    assert ledger.place_hold(acct, "reaped", 3000)
    assert ledger.release_hold("reaped", note="reaped: expired")  # closed before the group: nothing more
    rejected = RequestRecord(request_id="rejected", endpoint="chat.completions", status=402, account=acct)
    closed = finish_many([Finished(served_record("r1", first), True),
                          Finished(served_record("over", acct, cost_micros=1500, outcomes=[]), True),
                          Finished(_failed("failed", acct), True), Finished(rejected, False),
                          Finished(served_record("reaped", acct, outcomes=[]), True)])
    assert closed == [True, True, True, False, False]
    assert _entries("over") == [("hold", -1000, "over:hold", ""), ("release", 1000, "over:release", ""),
                                ("usage", -1500, "over:usage", "overshoot 500 micros over the hold")]
    assert _entries("failed") == [("hold", -7000, "failed:hold", ""),
                                  ("release", 7000, "failed:release", "request failed")]
    assert [k for k, *_ in _entries("reaped")] == ["hold", "release"]
    assert RequestLog.select().count() == 5 and len(RequestLog.get(RequestLog.request_id == "failed").error) == 1000
    assert RouteOutcome.select().where(RouteOutcome.request_id == "failed").get().error is None
    assert ledger.balance(acct).balance_micros == 1_000_000 - 1500
    assert Hold.select().where(Hold.closed_at.is_null()).count() == 0
    RouteOutcome.delete().where(RouteOutcome.request_id != "r1").execute()
    check_round_trip(first)  # the served request's rows, as finish() writes them


def test_an_empty_group_and_a_repeat_write_nothing_more(pg_db):
    acct = make_account(1_000_000)
    assert finish_many([]) == []
    assert ledger.place_hold(acct, "r1", 5000)
    assert finish_many([Finished(served_record("r1", acct, outcomes=[]), True)]) == [True]
    with pytest.raises(Exception):  # the request-log row exists: the whole statement is refused
        finish_many([Finished(served_record("r1", acct, outcomes=[]), True)])
    assert ledger.balance(acct).balance_micros == 1_000_000 - 1234
    assert ledger.check_ledger() == []


def _batched(record: RequestRecord, held: bool = True) -> group_commit._Unit:
    return group_commit._Unit(lambda: finish(record, held=held), AsyncResult(),
                              batch=group_commit.Batch(finish_many, Finished(record, held)))


def test_a_group_whose_statement_fails_is_committed_unit_by_unit(pg_db):
    acct = make_account(1_000_000)
    for rid in ("a", "b"):
        assert ledger.place_hold(acct, rid, 5000)
    finish(RequestRecord(request_id="logged", endpoint="chat.completions", status=200, account=acct), held=False)
    group = [_batched(served_record("a", acct, outcomes=[])), _batched(served_record("logged", acct), held=False),
             _batched(served_record("b", acct, outcomes=[]))]
    group_commit.commit_group(group)
    assert group[0].result.get() is True and group[2].result.get() is True
    with pytest.raises(Exception):
        group[1].result.get()
    assert ledger.balance(acct).balance_micros == 1_000_000 - 2 * 1234
    assert RequestLog.select().count() == 3 and ledger.check_ledger() == []


def test_a_mixed_group_writes_its_batch_and_runs_the_rest_in_one_transaction(pg_db):
    acct = make_account(1_000_000)
    for rid in ("a", "b"):
        assert ledger.place_hold(acct, rid, 5000)
    group = [_batched(served_record("a", acct, outcomes=[])),
             group_commit._Unit(lambda: ledger.settle_hold("b", 100), AsyncResult())]
    group_commit.commit_group(group)
    assert group[0].result.get() is True and group[1].result.get() == 100
    assert ledger.balance(acct).balance_micros == 1_000_000 - 1234 - 100
    assert ledger.check_ledger() == []


def test_the_reused_plan_finds_holds_by_request_id_not_by_scanning_open_ones(pg_db):
    import re

    from kyma.db import database
    from kyma.services.group_settle import STATEMENT

    numbered = iter(range(1, 1000))
    db = database.obj
    acct = make_account(1_000_000)
    # A gateway's table: many holds closed, a few open, and the statistics that say so.
    db.execute_sql("INSERT INTO hold (account_id, request_id, amount_micros, owner, created_at, expires_at, closed_at) "
                   "SELECT %s, 'old-' || n, 1, '', now(), now(), CASE WHEN n > 5 THEN now() END "
                   "FROM generate_series(1, 3000) AS n", (acct,))
    db.execute_sql("ANALYZE hold")
    # The plan a prepared statement settles on after a few runs: no values known.
    db.execute_sql("SET plan_cache_mode = force_generic_plan")
    db.execute_sql("PREPARE settle AS " + re.sub("%s", lambda _: f"${next(numbered)}", STATEMENT))
    count = next(numbered) - 1
    plan = "\n".join(r[0] for r in db.execute_sql(f"EXPLAIN EXECUTE settle({', '.join(['NULL'] * count)})"))
    db.execute_sql("DEALLOCATE settle")
    db.execute_sql("RESET plan_cache_mode")
    assert "hold_request_id" in plan and "hold_open" not in plan, plan


def test_a_plan_made_while_the_hold_table_was_small_still_finds_holds_by_index(pg_db):
    from kyma.db import database

    db = database.obj
    acct = make_account(1_000_000)
    # A new database: the connection settles on its plan within its first requests (and runs on with it).
    for i in range(_PLANNING_RUNS + 3):
        assert ledger.place_hold(acct, f"r{i}", 10)
        assert finish_many([Finished(served_record(f"r{i}", acct, cost_micros=5, outcomes=[]), True)]) == [True]
    db.execute_sql("INSERT INTO hold (account_id, request_id, amount_micros, owner, created_at, expires_at, closed_at) "
                   "SELECT %s, 'old-' || n, 1, '', now(), now(), now() FROM generate_series(1, 3000) AS n", (acct,))
    (name, params), = db.execute_sql("SELECT name, cardinality(parameter_types) FROM pg_prepared_statements "
                                     "WHERE statement LIKE 'WITH \"done\"%%'").fetchall()
    db.execute_sql("SET plan_cache_mode = force_generic_plan")  # the plan it keeps, not one made now
    plan = "\n".join(r[0] for r in db.execute_sql(f"EXPLAIN EXECUTE {name}({', '.join(['NULL'] * params)})"))
    db.execute_sql("RESET plan_cache_mode")
    assert "hold_request_id" in plan and "Seq Scan on hold" not in plan, plan


def test_pipelined_holds_are_each_refused_alone_in_arrival_order(pg_db):
    acct = make_account(1_000_000)
    wanted = [ledger.HoldRequest(acct, f"h{i}", amount, 60) for i, amount in enumerate((400_000, 400_000, 400_000,
                                                                                        150_000))]
    assert ledger.place_holds(wanted) == [True, True, False, True]
    assert {h.request_id for h in Hold.select()} == {"h0", "h1", "h3"}
    assert ledger.balance(acct) == ledger.Balance(acct, 50_000, 950_000, 0, 0)
    assert ledger.check_ledger() == []


def test_a_failed_pipeline_writes_nothing_and_leaves_the_connection_usable(pg_db):
    from kyma.db import database

    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "taken", 1_000)
    with pytest.raises(Exception):  # a request id held already: the whole batch is refused
        ledger.place_holds([ledger.HoldRequest(acct, "new", 2_000, 60), ledger.HoldRequest(acct, "taken", 3_000, 60)])
    assert not database.obj.in_transaction()
    assert [h.request_id for h in Hold.select()] == ["taken"]
    assert ledger.place_hold(acct, "after", 500)  # the same connection, out of the aborted transaction
    assert ledger.balance(acct).balance_micros == 1_000_000 - 1_500 and ledger.check_ledger() == []


def test_a_lone_hold_is_placed_and_refused_as_place_hold_does(pg_db):
    acct = make_account(1_000)
    assert ledger.place_holds([ledger.HoldRequest(acct, "big", 2_000, 60)]) == [False]
    assert ledger.place_holds([ledger.HoldRequest(acct, "fits", 1_000, 60, note="key 7")]) == [True]
    assert [(h.request_id, h.amount_micros) for h in Hold.select()] == [("fits", 1_000)]
    assert LedgerEntry.get(LedgerEntry.idempotency_key == "fits:hold").note == "key 7"
    assert ledger.balance(acct).balance_micros == 0 and ledger.check_ledger() == []


def test_pipelined_holds_of_several_accounts_answer_in_arrival_order(pg_db):
    a, b = make_account(1_000_000), make_account(500_000)
    if a > b:  # the batch locks accounts in id order: ask for the higher id first
        a, b = b, a
    wanted = [ledger.HoldRequest(b, "b1", 400_000, 60), ledger.HoldRequest(a, "a1", 600_000, 60),
              ledger.HoldRequest(b, "b2", 400_000, 60), ledger.HoldRequest(a, "a2", 500_000, 60)]
    assert ledger.place_holds(wanted) == [True, True, False, False]
    assert {h.request_id for h in Hold.select()} == {"a1", "b1"}
    assert ledger.check_ledger() == []


def test_a_real_deadlock_is_recognised_through_peewee():
    """Two transactions lock two accounts in opposite orders: the one PostgreSQL aborts is a deadlock."""
    import threading

    import psycopg

    from kyma.db import database, is_deadlock
    from tests.backends import postgres_schema

    bump = 'UPDATE "account" SET "balance_micros" = "balance_micros" + 1 WHERE "id" = %s'
    caught: list[BaseException] = []
    both_locked = threading.Barrier(2, timeout=10)

    def first(a: int, b: int) -> None:
        try:
            with database.obj.atomic():
                database.obj.execute_sql(bump, (a,))
                both_locked.wait()
                database.obj.execute_sql(bump, (b,))
        except Exception as exc:
            caught.append(exc)

    def second(other, a: int, b: int) -> None:
        try:
            with other.transaction():
                other.execute(bump, (b,))
                both_locked.wait()
                other.execute(bump, (a,))
        except Exception as exc:
            caught.append(exc)

    with postgres_schema() as url:
        a, b = make_account(1_000), make_account(1_000)
        with psycopg.connect(url) as other:
            threads = [threading.Thread(target=first, args=(a, b)), threading.Thread(target=second, args=(other, a, b))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        database.obj.close()
    assert len(caught) == 1 and is_deadlock(caught[0]), caught
    assert not is_deadlock(RuntimeError("deadlock detected"))  # the SQLSTATE decides, not the words


def test_a_group_settle_locks_its_accounts_in_id_order(pg_db):
    from kyma.db import database

    url = pg_db
    low, high = make_account(1_000_000), make_account(1_000_000)
    assert low < high
    assert ledger.place_hold(high, "h", 1000) and ledger.place_hold(low, "l", 1000)  # low's row now after high's
    group = [Finished(served_record("h", high, outcomes=[]), True), Finished(served_record("l", low, outcomes=[]), True)]

    def settle() -> None:
        # A hash join meets the accounts in the table's order, not the order of the group's sums.
        db = database.obj
        db.execute_sql("SET enable_nestloop = off")
        db.execute_sql("SET enable_mergejoin = off")
        try:
            finish_many(group)
        finally:
            db.execute_sql("RESET ALL")

    waits_on_lock_only_at_the_lower(url, low, high, settle)
    assert ledger.balance(low).balance_micros == ledger.balance(high).balance_micros == 1_000_000 - 1234
    assert ledger.check_ledger() == []


def test_a_group_transaction_locks_its_accounts_in_id_order_before_any_unit(pg_db):
    """An overshoot debits its account at once, in arrival order: the group locked both rows first."""
    from kyma.services.row_locks import RowLocks

    url = pg_db
    low, high = make_account(1_000_000), make_account(1_000_000)
    assert ledger.place_hold(high, "over", 1000)
    group = [group_commit._Unit(lambda: ledger.settle_hold("over", 5000), AsyncResult(), locks=RowLocks((high,))),
             group_commit._Unit(lambda: ledger.place_hold(low, "after", 1000), AsyncResult(), True,
                                locks=RowLocks((low,)))]
    waits_on_lock_only_at_the_lower(url, low, high, lambda: group_commit.commit_group(group))
    assert group[0].result.get() == 5000 and group[1].result.get() is True
    assert ledger.balance(high).balance_micros == 1_000_000 - 5000 and ledger.check_ledger() == []


def test_a_limited_keys_spend_moves_in_the_same_statement(pg_db):
    from kyma.models import ApiKey
    from kyma.services import key_limits

    acct = make_account(1_000_000)
    key = limited_key(acct, {"served": 5000, "failed": 7000, "reaped": 3000})
    assert ledger.release_hold("reaped", note="reaped: expired")
    key_limits.forget_hold("reaped")  # the reaper's own step: the statement must not give it back again
    closed = finish_many([Finished(served_record("served", acct, outcomes=[]), True, key),
                          Finished(_failed("failed", acct), True, key),
                          Finished(served_record("reaped", acct, outcomes=[]), True, key)])
    assert closed == [True, True, False]
    row = ApiKey.get_by_id(key)
    assert (row.spent_micros, row.held_micros) == (1234, 0), "as key_limits.settle moves them, once"
    assert ledger.balance(acct).balance_micros == 1_000_000 - 1234 and ledger.check_ledger() == []


def test_a_group_settle_locks_keys_before_accounts(pg_db):
    """A limited key's hold locks its key, then its account: the group settle takes them in that order too."""
    acct = make_account(1_000_000)
    key = limited_key(acct, {"r": 5000})
    group = [Finished(served_record("r", acct, outcomes=[]), True, key)]
    waits_on_lock_only_at_the_lower(pg_db, key, acct, lambda: finish_many(group), first="apikey")
    assert ledger.balance(acct).balance_micros == 1_000_000 - 1234 and ledger.check_ledger() == []


def test_a_settle_statement_logging_an_account_a_group_locked_does_not_deadlock_with_it(pg_db):
    """A request-log row's foreign keys take a key-share lock on its account at the end of the settle
    statement; the ordered locks must not block that (a FOR UPDATE lock would: the two then deadlock)."""
    import threading
    import time

    import psycopg

    from kyma.db import database
    from kyma.services import row_locks

    low, high = make_account(1_000_000), make_account(1_000_000)
    assert ledger.place_hold(high, "a", 5000)
    failure: list[BaseException] = []

    def settle() -> None:  # another worker: a served request of `high`, a refused one of `low`
        try:
            finish_many([Finished(served_record("a", high, outcomes=[]), True),
                         Finished(RequestRecord(request_id="b", endpoint="chat.completions", status=429,
                                                account=low), False)])
        except BaseException as exc:
            failure.append(exc)
        finally:
            database.obj.close()

    with psycopg.connect(pg_db) as group, psycopg.connect(pg_db, autocommit=True) as probe:
        group.execute(row_locks.LOCK_ACCOUNTS, ([low],))  # a group's transaction: `low` locked, `high` next
        thread = threading.Thread(target=settle)
        thread.start()
        deadline = time.monotonic() + 30  # a bound on the polling, not a timing claim
        while thread.is_alive() and time.monotonic() < deadline and not probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'").fetchone()[0]:
            time.sleep(0.01)
        try:
            group.execute(row_locks.LOCK_ACCOUNTS, ([high],))  # the rest of the group's ordered locks
            group.commit()
        except psycopg.Error as exc:
            failure.append(exc)
        thread.join(30)
    assert not failure, failure
    assert RequestLog.select().where(RequestLog.request_id.in_(["a", "b"])).count() == 2
