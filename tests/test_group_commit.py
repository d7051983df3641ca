"""Group commit of settlements: one transaction for many, no unit lost or doubled, a killed worker's
pending group billed to no one, and the PostgreSQL one-statement hold."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import pytest
import requests
from gevent.event import AsyncResult

from kyma.models import Account, Hold, LedgerEntry
from kyma.services import group_commit, ledger, owners
from tests.accounts import make_account
from tests.backends import pg_db  # noqa: F401
from tests.conftest import register
from tests.gated import GATE, release, waiting
from tests.servers import db_rows, flask_here, gateway_env, start_gateway


def _unit(work) -> group_commit._Unit:
    return group_commit._Unit(work, AsyncResult())


def _settle_group(acct: int) -> list:
    """Three holds settled in one group; the second unit fails after its settle."""
    for rid in ("r1", "r2", "r3"):
        assert ledger.place_hold(acct, rid, 100_000)

    def broken():
        ledger.settle_hold("r2", 40_000)
        raise RuntimeError("the request log refused the row")

    group = [_unit(lambda: ledger.settle_hold("r1", 30_000)), _unit(broken),
             _unit(lambda: ledger.settle_hold("r3", 150_000))]  # an overshoot: cost above the hold
    group_commit.commit_group(group)
    return group


def _check_group(acct: int, group: list) -> None:
    assert group[0].result.get() == 30_000 and group[2].result.get() == 150_000
    with pytest.raises(RuntimeError):
        group[1].result.get()
    # The failed unit was undone alone: its hold is still open, the others are settled once.
    assert Hold.get(Hold.request_id == "r2").closed_at is None
    assert Hold.get(Hold.request_id == "r1").closed_at is not None
    assert ledger.balance(acct).balance_micros == 1_000_000 - 30_000 - 100_000 - 150_000
    entries = [(e.kind, e.amount_micros, e.note) for e in
               LedgerEntry.select().where(LedgerEntry.request_id == "r3").order_by(LedgerEntry.id)]
    assert entries == [("hold", -100_000, ""), ("release", 100_000, ""),
                       ("usage", -150_000, "overshoot 50000 micros over the hold")]
    assert ledger.check_ledger() == []


def test_a_failing_unit_undoes_only_itself(backend_db):
    acct = make_account(1_000_000)
    _check_group(acct, _settle_group(acct))


def test_an_isolated_refusal_undoes_its_own_writes_and_nothing_else(backend_db):
    acct = make_account(1_000_000)
    runs = []

    def refused():
        runs.append("refused")
        assert ledger.place_hold(acct, "refused", 50_000)
        raise LookupError("the key's limit refused it")

    def admitted(rid):
        runs.append(rid)
        return ledger.place_hold(acct, rid, 100_000)

    group = [group_commit._Unit(lambda: admitted("h1"), AsyncResult(), True),
             group_commit._Unit(refused, AsyncResult(), True),
             group_commit._Unit(lambda: admitted("h2"), AsyncResult(), True)]
    group_commit.commit_group(group)
    assert group[0].result.get() is True and group[2].result.get() is True
    with pytest.raises(LookupError):
        group[1].result.get()
    assert runs == ["h1", "refused", "h2"], "one pass: the refusal did not make the group run again"
    assert {h.request_id for h in Hold.select()} == {"h1", "h2"}
    assert ledger.balance(acct).balance_micros == 800_000
    assert ledger.check_ledger() == []


def test_a_hold_sees_an_overshoot_settled_earlier_in_its_group(backend_db):
    """One group: a settlement 500,000 over its hold, then a hold of the same account that only the
    balance before that overshoot could cover."""
    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "over", 100_000)
    group = [_unit(lambda: ledger.settle_hold("over", 600_000)),
             group_commit._Unit(lambda: ledger.place_hold(acct, "after", 500_000), AsyncResult(), True)]
    group_commit.commit_group(group)
    assert group[0].result.get() == 600_000
    assert group[1].result.get() is False, "the hold saw the balance before the overshoot"
    assert ledger.balance(acct).balance_micros == 400_000 and ledger.check_ledger() == []


def test_a_lone_failing_unit_is_not_run_again(sqlite_db):
    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "alone", 100_000)
    runs = []

    def broken():
        runs.append(1)
        ledger.settle_hold("alone", 40_000)
        raise RuntimeError("the request log refused the row")

    group = [_unit(broken)]
    group_commit.commit_group(group)
    with pytest.raises(RuntimeError):
        group[0].result.get()
    assert runs == [1], "rolled back once, not run a second time for nothing"
    assert Hold.get(Hold.request_id == "alone").closed_at is None
    assert ledger.balance(acct).balance_micros == 900_000 and ledger.check_ledger() == []


def test_deferred_balances_write_each_account_once_with_the_sum(sqlite_db):
    a, b = make_account(1_000_000), make_account(1_000_000)
    for acct, rid in ((a, "a1"), (a, "a2"), (b, "b1")):
        assert ledger.place_hold(acct, rid, 100_000)
    with sqlite_db.atomic(), ledger.deferred_balances():
        ledger.settle_hold("a1", 10_000)
        ledger.settle_hold("a2", 20_000)
        ledger.release_hold("b1")
        assert Account.get_by_id(a).balance_micros == 800_000  # not yet: written just before the commit
    assert Account.get_by_id(a).balance_micros == 970_000
    assert Account.get_by_id(b).balance_micros == 1_000_000
    assert ledger.check_ledger() == []


def test_another_greenlets_balance_change_is_never_deferred_into_a_group(sqlite_db):
    import gevent

    acct = make_account(1_000_000)
    with ledger.deferred_balances():
        ledger._add_to_balance(acct, 7)  # the group's own credit: deferred
        gevent.spawn(ledger._add_to_balance, acct, 5).join()  # another greenlet's: written at once
        assert Account.get_by_id(acct).balance_micros == 1_000_005
    assert Account.get_by_id(acct).balance_micros == 1_000_012


def test_the_one_statement_hold_on_postgresql_refuses_without_writing(pg_db):
    acct = make_account(1_000)
    assert not ledger.place_hold(acct, "too-big", 2_000)
    assert Hold.select().count() == 0 and ledger.balance(acct).balance_micros == 1_000
    assert ledger.place_hold(acct, "fits", 1_000)
    hold = Hold.get(Hold.request_id == "fits")
    assert (hold.account_id, hold.amount_micros, hold.closed_at) == (acct, 1_000, None)
    assert hold.owner == owners.worker_identity()
    assert ledger.balance(acct) == ledger.Balance(acct, 0, 1_000, 0, 0)
    assert ledger.check_ledger() == []


# --- a real gateway: a group pending when its worker is killed -----------------------------------

# The flusher gathers this long: the four requests' settlements wait in one pending group while the
# test kills the worker, well within it (the simulators' answers are awaited, not slept for: the kill
# follows them by one poll). Long enough for a busy machine to land the kill inside it.
WINDOW_MS = 4000


@pytest.fixture()
def grouping_gateway(tmp_path, simulators):
    """A gateway of its own (the test kills its worker) in front of the pytest process's simulators."""
    base, sims = simulators
    gw = start_gateway(tmp_path, gateway_env(tmp_path, base, KYMA_GROUP_COMMIT_MS=str(WINDOW_MS)))
    env = gw.env
    user = register(gw.url, "group@example.com")
    assert flask_here(env, "credits", "add", "group@example.com", "100").returncode == 0
    yield gw, user, env, sims
    gw.stop()


def _ask(url: str, key: str, **headers: str):
    try:
        return requests.post(f"{url}/v1/chat/completions", timeout=30,
                             headers={"Authorization": f"Bearer {key}", **headers},
                             json={"model": "glm-4.5-air", "max_tokens": 20,
                                   "messages": [{"role": "user", "content": "Say hi"}]})
    except requests.ConnectionError as exc:
        return exc


def _open_holds(env: dict) -> list[tuple[str, str]]:
    return db_rows(env, "select request_id, owner from hold where closed_at is null")


def _kinds(env: dict, request_id: str) -> list[str]:
    return [k for (k,) in db_rows(env, "select kind from ledgerentry where request_id={p} order by id", request_id)]


@pytest.mark.integration
def test_kill_9_with_a_group_pending_loses_no_charge_and_doubles_none(grouping_gateway):
    gw, user, env, sims = grouping_gateway
    key, gates = user["api_key"], [sim.url for sim in sims]
    with ThreadPoolExecutor(max_workers=4) as pool:
        # Held at the simulators' gate until all four holds are open: none can settle before.
        futures = [pool.submit(_ask, gw.url, key, **GATE) for _ in range(4)]
        deadline = time.monotonic() + 60  # a bound on the polling, not a timing claim
        while (len(_open_holds(env)) < 4 or waiting(gates) < 4) and time.monotonic() < deadline:
            time.sleep(0.05)
        holds = _open_holds(env)
        assert len(holds) == 4 and waiting(gates) == 4
        killed = [rid for rid, _ in holds]
        assert db_rows(env, "select count(*) from requestlog") == [(0,)]
        # Released, the simulators answer all four at once, and their settlements then wait in the
        # flusher's group, which gathers for WINDOW_MS: the kill follows within a poll, well inside it.
        # (Were it to land before the answers, every check below must hold all the same.)
        assert release(gates) == 4
        while waiting(gates) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting(gates) == 0
        os.kill(int(holds[0][1].rsplit(":", 1)[1]), signal.SIGKILL)
        answers = [f.result() for f in futures]
    assert not any(isinstance(a, requests.Response) and a.status_code == 200 for a in answers), \
        "no client got an answer whose settlement was never committed"
    reaped = flask_here(env, "ledger", "reap")  # the master's new worker may have reaped them already
    assert reaped.returncode == 0, reaped.stdout + reaped.stderr
    assert _open_holds(env) == []
    for rid in killed:
        assert _kinds(env, rid) == ["hold", "release"], "an unanswered request is billed to no one"

    # The master's new worker: every answered request is charged, exactly once.
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: _ask(gw.url, key), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    for a in answers:
        rid = a.headers["X-Request-Id"]
        assert _kinds(env, rid) == ["hold", "release", "usage"]
        cost = db_rows(env, "select cost_micros from requestlog where request_id={p}", rid)
        assert cost and cost[0][0] > 0 and abs(cost[0][0] - a.json()["usage"]["cost"] * 1_000_000) < 1
    check = flask_here(env, "ledger", "check")
    assert check.returncode == 0, check.stdout + check.stderr


class _Deadlock(Exception):
    sqlstate = "40P01"


def _hold_aborted_once(acct: int, tries: list) -> Callable[[], int]:
    """A unit that places a hold, and the first time is aborted as the server aborts a deadlock's loser."""

    def hold() -> int:
        tries.append(1)
        assert ledger.place_hold(acct, f"d{len(tries)}", 1_000)
        if len(tries) == 1:
            raise _Deadlock("deadlock detected")  # its writes are rolled back, as the server's abort does
        return len(tries)

    return hold


def test_a_unit_aborted_by_a_deadlock_runs_again_and_other_errors_do_not(sqlite_db):
    tries = []
    assert group_commit.alone(_hold_aborted_once(make_account(1_000_000), tries)) == 2
    assert [h.request_id for h in Hold.select()] == ["d2"]
    failures = []

    def broken():
        failures.append(1)
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        group_commit.alone(broken)
    assert failures == [1]
    assert ledger.check_ledger() == []


def test_a_lone_unit_in_a_group_aborted_by_a_deadlock_runs_again(sqlite_db):
    tries = []
    group = [_unit(_hold_aborted_once(make_account(1_000_000), tries))]
    group_commit.commit_group(group)
    assert group[0].result.get() == 2 and len(tries) == 2
    assert [h.request_id for h in Hold.select()] == ["d2"] and ledger.check_ledger() == []
