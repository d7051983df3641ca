"""A live stream keeps its credit hold; only abandoned holds are reaped (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from kyma.models import Account, Hold, utcnow
from kyma.services import ledger


def _extend_then_reap() -> None:
    account = Account.create(email="h@example.com", password_hash="x")
    ledger.add_credit(account.id, 1, kind="grant")
    assert ledger.place_hold(account.id, "live", 1000, ttl_seconds=60)
    assert ledger.place_hold(account.id, "abandoned", 1000, ttl_seconds=60)
    later = utcnow() + timedelta(seconds=120)
    ledger.extend_hold("live", 600)  # what a stream does while it is still relaying
    assert ledger.reap_expired_holds(now=later) == 1
    assert Hold.get(Hold.request_id == "live").closed_at is None
    assert Hold.get(Hold.request_id == "abandoned").closed_at is not None
    assert ledger.settle_hold("live", 400) == 400
    assert ledger.check_ledger() == []


def test_extending_a_hold_keeps_it_from_the_reaper(backend_db):
    # psycopg refuses to fetch rows from an UPDATE without RETURNING: extend_hold must not ask for any.
    _extend_then_reap()
