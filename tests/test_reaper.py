"""The reaper's round: abandoned holds released, dead counter rows pruned, one failure never stops the rest."""

from __future__ import annotations

import logging
import time

import pytest

from kyma.models import RateCounter
from kyma.services import counters, reaper


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
