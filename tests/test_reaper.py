"""The reaper's round: abandoned holds released, dead counter rows pruned, one failure never stops the rest."""

from __future__ import annotations

import logging
import time

import pytest

from kyma.models import RateCounter
from kyma.services import counters, reaper
from tests.backends import pg_db  # noqa: F401


def keys_left() -> set[str]:
    return {row.key for row in RateCounter.select(RateCounter.key)}


def _prune_round() -> None:
    now = int(time.time())
    hour = counters.LONGEST_WINDOW_SECONDS
    # A sign-up window that began 50 to 110 minutes ago: "rl:" buckets that old are dead, it is not.
    signup_at = (now - 3000) // hour * hour + 1
    counters.backend().hit("signup:ip:203.0.113.1", hour, 4, now=signup_at)
    RateCounter.insert_many([
        {"key": "rl:old", "window": now - counters.RETIRED_AFTER_SECONDS - 1, "count": 1},  # a minute bucket long gone
        {"key": "rl:live", "window": now - 5, "count": 1},
        {"key": "login-fail:ip:203.0.113.1", "window": now - 2 * hour - 1, "count": 9},  # ended long ago
    ]).execute()
    reaper.run_chores()
    assert keys_left() == {"rl:live", "signup:ip:203.0.113.1"}
    assert counters.backend().peek("signup:ip:203.0.113.1", hour, now=signup_at).count == 4


def test_a_round_prunes_dead_rate_buckets_and_ended_counter_windows_only(backend_db):
    _prune_round()


def test_a_counter_window_longer_than_the_pruning_allows_is_refused(sqlite_db):
    with pytest.raises(ValueError):
        counters.backend().hit("signup:ip:x", counters.LONGEST_WINDOW_SECONDS + 1)


def test_a_failing_chore_is_logged_and_the_others_still_run(sqlite_db, monkeypatch, caplog):
    ran = []

    def broken():
        raise RuntimeError("database is locked")

    monkeypatch.setattr(reaper, "CHORES", (("first", broken), ("second", lambda: ran.append("second"))))
    with caplog.at_level(logging.ERROR, logger="kyma.services.reaper"):
        reaper.run_chores()
    assert ran == ["second"]
    assert "first failed" in caplog.text and "database is locked" in caplog.text


def test_the_upkeep_threads_reports_are_logged_a_failed_integrity_check_as_critical(sqlite_db, monkeypatch,
                                                                                     caplog):
    import os

    from kyma import wal

    upkeep = wal.Upkeep("/nowhere/kyma.db")  # not started: its reports stand for the thread's
    upkeep.reports.append(wal.Report("WAL checkpoint of /nowhere/kyma.db failed: disk I/O error"))
    upkeep.reports.append(wal.Report("SQLite quick_check of /nowhere/kyma.db FAILED: row 3 missing", critical=True))
    monkeypatch.setitem(wal._upkeep, (os.getpid(), "/nowhere/kyma.db"), upkeep)
    with caplog.at_level(logging.ERROR, logger="kyma.services.reaper"):
        reaper.run_chores()
    levels = {r.getMessage(): r.levelno for r in caplog.records}
    assert levels["WAL checkpoint of /nowhere/kyma.db failed: disk I/O error"] == logging.ERROR
    assert levels["SQLite quick_check of /nowhere/kyma.db FAILED: row 3 missing"] == logging.CRITICAL
    assert not upkeep.reports  # each is logged once


# --- on PostgreSQL the reaper locks rows in the order every settlement does ----------------------


def _expired_hold_of_a_limited_key() -> tuple[int, int, int]:
    """An account, its limited key and the id of an expired hold that key counts."""
    from kyma.models import Hold
    from tests.accounts import limited_key, make_account

    acct = make_account(1_000_000)
    key = limited_key(acct, {"abandoned": 5000}, ttl_seconds=-1)
    return acct, key, Hold.get(Hold.request_id == "abandoned").id


def _released(acct: int, key: int) -> None:
    from kyma.models import ApiKey
    from kyma.services import ledger

    assert ledger.balance(acct).balance_micros == 1_000_000 and ledger.balance(acct).held_micros == 0
    assert ApiKey.get_by_id(key).held_micros == 0 and ledger.check_ledger() == []


@pytest.mark.postgres
def test_the_reaper_waits_for_the_account_before_it_touches_the_hold(pg_db):
    """A settlement holding the account and about to close the hold cannot deadlock with the reaper."""
    from kyma.services import ledger
    from tests.lock_waits import waits_on_lock_only_at_the_lower

    acct, key, hold = _expired_hold_of_a_limited_key()
    reaped = []
    waits_on_lock_only_at_the_lower(pg_db, acct, hold, lambda: reaped.append(ledger.reap_expired_holds()),
                                    then="hold")
    assert reaped == [1]
    _released(acct, key)


@pytest.mark.postgres
def test_the_reaper_leaves_a_hold_another_transaction_is_closing(pg_db):
    """The settle statement closes its holds before it locks their accounts: a reaper that waited for the
    hold while holding the account would close the circle. It moves on; the next round finds it."""
    import threading

    import psycopg

    from kyma.db import database
    from kyma.services import ledger

    acct, key, hold = _expired_hold_of_a_limited_key()
    reaped: list = []

    def reap() -> None:
        try:
            reaped.append(ledger.reap_expired_holds())
        finally:
            database.obj.close()

    with psycopg.connect(pg_db) as settling:
        settling.execute('UPDATE "hold" SET "closed_at" = NULL WHERE "id" = %s', (hold,))  # locks it, as a close
        thread = threading.Thread(target=reap)
        thread.start()
        thread.join(30)  # a bound on a hang: skipping a locked row waits for nothing
        alive = thread.is_alive()
        settling.rollback()
    thread.join(30)
    assert not alive and reaped == [0]
    assert ledger.reap_expired_holds() == 1
    _released(acct, key)
