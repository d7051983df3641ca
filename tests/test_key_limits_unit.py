"""Per-key credit limits at the service level: reserve, settle and the reaper, on a fresh SQLite database."""

from __future__ import annotations

from datetime import timedelta

from kyma.db import write_transaction
from kyma.models import ApiKey, utcnow
from kyma.services import accounts, key_limits, ledger


def _limited_principal(app, limit_usd: float) -> accounts.Principal:
    reg = accounts.register("ada@example.com", "correct horse", _settings())
    accounts.set_key_limits(reg.account_id, reg.api_key_id, {"credit_limit": limit_usd}, _catalog())
    return accounts.authenticate(reg.api_key)


def _settings():
    from kyma.runtime import runtime

    return runtime().settings


def _catalog():
    from kyma.runtime import runtime

    return runtime().catalog


def _hold(principal, request_id: str, amount: int) -> bool:
    with write_transaction():
        if not key_limits.reserve(principal, amount):
            return False
        assert ledger.place_hold(principal.account_id, request_id, amount, ttl_seconds=60,
                                 note=key_limits.hold_note(principal))
    return True


def test_holds_count_against_the_limit_until_settled_or_reaped(app):
    with app.app_context():
        p = _limited_principal(app, 0.0003)  # 300 micro-dollars
        assert _hold(p, "r1", 200) and not _hold(p, "r2", 101) and _hold(p, "r3", 100)
        key = ApiKey.get_by_id(p.api_key_id)
        assert (key.spent_micros, key.held_micros) == (0, 300)
        ledger.settle_hold("r1", 150)
        key_limits.settle(p, 200, 150)
        assert _hold(p, "r4", 50) and not _hold(p, "r5", 1)
        # r3 and r4's worker died: the reaper gives their holds back to the balance and to the key.
        assert ledger.reap_expired_holds(now=utcnow() + timedelta(minutes=5)) == 2
        key = ApiKey.get_by_id(p.api_key_id)
        assert (key.spent_micros, key.held_micros) == (150, 0)
        assert ledger.check_ledger() == []


def test_a_key_without_a_limit_writes_nothing_to_its_row(app):
    with app.app_context():
        reg = accounts.register("bob@example.com", "correct horse", _settings())
        p = accounts.authenticate(reg.api_key)
        assert key_limits.hold_note(p) == "" and _hold(p, "r1", 10 ** 5)
        key_limits.settle(p, 10 ** 5, 10)
        assert (ApiKey.get_by_id(p.api_key_id).held_micros, ApiKey.get_by_id(p.api_key_id).spent_micros) == (0, 0)


def test_a_late_settle_of_a_reaped_hold_leaves_the_key_alone(app):
    """The reaper gave the hold back to the key; the request's own settle must not take it off again."""
    from kyma.chat import records
    from kyma.services.recording import RequestRecord

    class Prep:  # what records._settle reads of a prepared request
        principal = None
        hold_micros = 200

    with app.app_context():
        p = _limited_principal(app, 0.0003)
        assert _hold(p, "r1", 200)
        assert ledger.reap_expired_holds(now=utcnow() + timedelta(minutes=5)) == 1
        prep = Prep()
        prep.principal = p
        with write_transaction():
            records._settle(prep, RequestRecord(request_id="r1", endpoint="chat", status=200, account=p.account_id,
                                                model_served="kimi-k2.5", cost_micros=150))
        key = ApiKey.get_by_id(p.api_key_id)
        assert (key.spent_micros, key.held_micros) == (0, 0)  # not -200 held, not 150 spent uncharged
        assert ledger.check_ledger() == []
