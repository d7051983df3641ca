"""The credit ledger: holds, settlement, release, reaper, top-ups and the consistency check."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import peewee
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kyma.db import database
from kyma.errors import Conflict, InvalidRequest
from kyma.models import Account, Hold, LedgerEntry, utcnow
from kyma.services import group_commit, ledger, owners
from tests.accounts import make_account
from tests.racers import hold_many, race_context


def test_hold_then_settle_debits_the_actual_cost(sqlite_db):
    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "r1", 300_000)
    b = ledger.balance(acct)
    assert (b.balance_micros, b.held_micros) == (700_000, 300_000)
    assert ledger.settle_hold("r1", 120_000) == 120_000
    b = ledger.balance(acct)
    assert (b.balance_micros, b.held_micros) == (880_000, 0)
    kinds = [e.kind for e in LedgerEntry.select().where(LedgerEntry.request_id == "r1").order_by(LedgerEntry.id)]
    assert kinds == ["hold", "release", "usage"]
    assert ledger.check_ledger() == []


def test_settle_is_exactly_once(sqlite_db):
    acct = make_account(1_000_000)
    assert ledger.place_hold(acct, "r1", 300_000)
    assert ledger.settle_hold("r1", 100_000) == 100_000
    assert ledger.settle_hold("r1", 100_000) is None
    assert ledger.release_hold("r1") is False
    assert ledger.balance(acct).balance_micros == 900_000
    assert LedgerEntry.select().where(LedgerEntry.kind == "usage").count() == 1


def test_hold_beyond_balance_is_refused_and_writes_nothing(sqlite_db):
    acct = make_account(100)
    assert ledger.place_hold(acct, "big", 101) is False
    assert Hold.select().count() == 0
    assert LedgerEntry.select().where(LedgerEntry.kind == "hold").count() == 0
    assert ledger.place_hold(acct, "exact", 100) is True
    assert ledger.balance(acct).balance_micros == 0


def test_release_returns_the_whole_hold(sqlite_db):
    acct = make_account(500)
    assert ledger.place_hold(acct, "r", 400)
    assert ledger.release_hold("r") is True
    assert ledger.balance(acct).balance_micros == 500
    assert ledger.check_ledger() == []


def test_overshoot_charges_true_cost_and_blocks_new_holds(sqlite_db):
    """Cost above the hold is debited in full; the balance goes negative by the overshoot only."""
    acct = make_account(1000)
    assert ledger.place_hold(acct, "r", 1000)
    assert ledger.settle_hold("r", 1200) == 1200
    assert ledger.balance(acct).balance_micros == -200
    note = LedgerEntry.get(LedgerEntry.kind == "usage").note
    assert note.startswith("overshoot 200")
    assert ledger.place_hold(acct, "next", 0) is False  # negative balance → 402 even for a free request
    assert ledger.check_ledger() == []  # recorded overshoot is not a mismatch
    ledger.add_credit(acct, "0.001", kind="grant")
    assert ledger.place_hold(acct, "after-topup", 800)


def test_settle_nests_inside_an_outer_transaction(sqlite_db):
    acct = make_account(1000)
    assert ledger.place_hold(acct, "r", 500)
    with pytest.raises(RuntimeError):
        with database.atomic():
            ledger.settle_hold("r", 300)
            raise RuntimeError("the request-log write failed")
    assert ledger.balance(acct).balance_micros == 500  # the settle rolled back with the outer txn
    with database.atomic():
        assert ledger.settle_hold("r", 300) == 300
    assert ledger.balance(acct).balance_micros == 700


def test_purchase_raises_tier_at_once_grant_does_not(sqlite_db):
    acct = make_account(email="buyer@example.com")
    ledger.add_credit("buyer@example.com", 100, kind="grant")
    assert ledger.balance(acct).tier == 0
    result = ledger.add_credit("Buyer@Example.com", "5", kind="purchase")
    assert result.tier == 1
    b = ledger.balance(acct)
    assert (b.tier, b.lifetime_purchased_micros, b.balance_micros) == (1, 5_000_000, 105_000_000)
    ledger.add_credit(acct, 45, kind="purchase")
    assert ledger.balance(acct).tier == 2


def test_idempotent_top_up(sqlite_db):
    acct = make_account()
    first = ledger.add_credit(acct, 5, idempotency_key="pay-1")
    again = ledger.add_credit(acct, 5, idempotency_key="pay-1")
    assert again.replayed and again.entry_id == first.entry_id
    assert ledger.balance(acct).balance_micros == 5_000_000
    with pytest.raises(Conflict):
        ledger.add_credit(acct, 6, idempotency_key="pay-1")
    with pytest.raises(InvalidRequest):
        ledger.add_credit(acct, -1, kind="purchase")


def test_reaper_releases_expired_and_dead_owner_holds(sqlite_db):
    acct = make_account(10_000)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert ledger.place_hold(acct, "expired", 1000, ttl_seconds=1)
    assert ledger.place_hold(acct, "orphan", 2000, owner=owners.identity_of(dead.pid))
    assert ledger.place_hold(acct, "live", 3000)  # this process: not reaped
    assert ledger.place_hold(acct, "elsewhere", 500, owner="other-host:1")
    assert ledger.reap_expired_holds(now=utcnow() + timedelta(seconds=5)) == 2
    assert {h.request_id for h in Hold.select().where(Hold.closed_at.is_null())} == {"live", "elsewhere"}
    assert ledger.balance(acct).balance_micros == 10_000 - 3000 - 500
    assert ledger.settle_hold("orphan", 100) is None  # a late finisher cannot bill a reaped hold
    assert ledger.check_ledger() == []


def test_the_reaper_releases_every_hold_while_other_workers_commit(sqlite_db, monkeypatch):
    # Writing while its SELECT was still open failed at once ("database is locked") as soon as
    # another connection had committed: under load the reaper freed a hold or two a round.
    from kyma import sqlite

    acct = make_account(10_000)
    for i in range(5):
        assert ledger.place_hold(acct, f"old-{i}", 100, ttl_seconds=1)
    other = sqlite.connect(sqlite_db.database)
    alone, commits = group_commit.alone, []

    def release_after_another_worker_commits(work, locks):  # each hold's release is a transaction alone
        commits.append(1)
        other.execute("INSERT INTO ratecounter (key, window, count) VALUES (?, 0, 1)", (f"other-{len(commits)}",))
        return alone(work, locks)

    monkeypatch.setattr(group_commit, "alone", release_after_another_worker_commits)
    assert ledger.reap_expired_holds(now=utcnow() + timedelta(seconds=5)) == 5
    assert ledger.check_ledger() == []
    other.close()


def test_check_ledger_reports_a_tampered_balance_and_stale_holds(sqlite_db):
    acct = make_account(1000)
    Account.update(balance_micros=5000).where(Account.id == acct).execute()
    problems = ledger.check_ledger()
    assert len(problems) == 1 and "sum of entries 1000" in problems[0].reason
    Account.update(balance_micros=1000).where(Account.id == acct).execute()
    assert ledger.place_hold(acct, "r", 100, ttl_seconds=1)
    stale = ledger.check_ledger(now=utcnow() + timedelta(seconds=5))
    assert [p.reason for p in stale] == ["an open hold is past its expiry (run `ledger reap`)"]


def test_no_float_fields_in_money_code():
    """No float arithmetic reaches the ledger."""
    source = open(ledger.__file__).read()
    assert "float(" not in source and "FloatField" not in source


class LedgerMachine(RuleBasedStateMachine):
    """Random top-ups, holds, settles, releases and reaps keep every ledger invariant."""

    def __init__(self):
        super().__init__()
        Account.delete().execute()
        self.accounts = [make_account() for _ in range(2)]
        self.open: dict[str, int] = {}
        self.closed: set[str] = set()
        self.n = 0

    @rule(i=st.integers(0, 1), micros=st.integers(1, 5_000_000), purchase=st.booleans())
    def top_up(self, i, micros, purchase):
        ledger.add_credit(self.accounts[i], micros / 1_000_000, kind="purchase" if purchase else "grant")

    @rule(i=st.integers(0, 1), micros=st.integers(0, 3_000_000))
    def hold(self, i, micros):
        self.n += 1
        rid = f"r{self.n}"
        before = ledger.balance(self.accounts[i]).balance_micros
        ok = ledger.place_hold(self.accounts[i], rid, micros)
        assert ok == (before >= micros)
        if ok:
            self.open[rid] = micros

    @precondition(lambda self: self.open)
    @rule(data=st.data(), fraction=st.floats(0, 1.2))
    def settle(self, data, fraction):
        rid = data.draw(st.sampled_from(sorted(self.open)))
        cost = int(self.open[rid] * fraction)
        assert ledger.settle_hold(rid, cost) == cost
        assert ledger.settle_hold(rid, cost) is None
        self.closed.add(rid)
        del self.open[rid]

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def release(self, data):
        rid = data.draw(st.sampled_from(sorted(self.open)))
        assert ledger.release_hold(rid)
        self.closed.add(rid)
        del self.open[rid]

    @rule()
    def reap_everything(self):
        reaped = ledger.reap_expired_holds(now=utcnow() + timedelta(days=1))
        assert reaped == len(self.open)
        self.closed.update(self.open)
        self.open.clear()

    @invariant()
    def balances_match_entries(self):
        assert ledger.check_ledger() == []

    @invariant()
    def holds_match(self):
        held = sum(ledger.balance(a).held_micros for a in self.accounts)
        assert held == sum(self.open.values())

    @invariant()
    def negative_only_by_overshoot(self):
        for a in self.accounts:
            if ledger.balance(a).balance_micros < 0:
                assert LedgerEntry.select().where((LedgerEntry.account == a)
                                                  & LedgerEntry.note.startswith("overshoot")).exists()


def test_ledger_state_machine(sqlite_db):
    LedgerMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                               suppress_health_check=list(HealthCheck))
    LedgerMachine.TestCase().runTest()


# ---- no overspend across OS processes ----

def _race_holds(url: str, procs: int = 6, attempts: int = 8) -> tuple[int, int]:
    acct = make_account(1_000_000)  # covers exactly 10 holds of 100_000
    ctx = race_context()
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=hold_many, args=(url, acct, barrier, results, f"p{i}", attempts))
               for i in range(procs)]
    for w in workers:
        w.start()
    won = sum(results.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(10)
    return won, acct


def test_concurrent_holds_never_overspend(backend_db):
    won, acct = _race_holds(backend_db)
    assert won == 10
    assert ledger.balance(acct).balance_micros == 0
    assert ledger.check_ledger() == []


def _repeat_a_keyed_credit_inside_a_transaction() -> None:
    acct = make_account()
    first = ledger.add_credit(acct, "2.50", kind="purchase", idempotency_key="order-7")
    with database.atomic():  # a caller's own transaction, e.g. a payment webhook's
        again = ledger.add_credit(acct, "2.50", kind="purchase", idempotency_key="order-7")
        assert Account.get_by_id(acct).balance_micros == 2_500_000  # still usable: not spoilt
    assert again.replayed and again.entry_id == first.entry_id
    assert ledger.check_ledger() == []


def test_a_keyed_repeat_inside_a_transaction_replays_without_spoiling_it(backend_db):
    # PostgreSQL refuses every statement after a failed one: the repeat must not try the insert.
    _repeat_a_keyed_credit_inside_a_transaction()


def test_the_credit_history_shows_every_credit_kind_and_no_per_request_movement(sqlite_db):
    from kyma.services import dashboard

    acct = make_account()
    for kind in ledger.CREDIT_KINDS:
        ledger.add_credit(acct, 1, kind=kind)
    assert ledger.place_hold(acct, "r1", 300_000) and ledger.settle_hold("r1", 100_000) == 100_000
    assert sorted(e.kind for e in dashboard.credit_history(acct, limit=20)) == sorted(ledger.CREDIT_KINDS)


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_credit_whose_commit_answer_was_lost_is_looked_up_not_reported_failed(backend_db, monkeypatch, when):
    """Reported failed after it landed, a credit without an idempotency key would be added again by the
    operator who retries; one that did not land must still fail."""
    from tests.lost_answer import fail_first_commit

    acct = make_account()
    fail_first_commit(monkeypatch, when)
    if when == "after":
        assert ledger.add_credit(acct, 5, kind="grant").amount_micros == 5_000_000
    else:
        with pytest.raises(peewee.OperationalError):
            ledger.add_credit(acct, 5, kind="grant")
    assert ledger.balance(acct).balance_micros == (5_000_000 if when == "after" else 0)
    assert ledger.check_ledger() == []


def test_a_console_grant_whose_commit_answer_was_lost_is_granted_and_audited_once(backend_db, monkeypatch):
    from kyma.models import AuditEntry
    from kyma.services import admin_accounts
    from tests.lost_answer import fail_first_commit

    acct = make_account()
    fail_first_commit(monkeypatch, "after")
    result = admin_accounts.grant_credit("admin@example.com", acct, "7", "form-1")
    assert not result.replayed and ledger.balance(acct).balance_micros == 7_000_000
    assert AuditEntry.select().count() == 1 and ledger.check_ledger() == []
