"""Accounts for tests: one made in the bound database, or a balance read from a running gateway."""

from __future__ import annotations

import uuid

import requests

from kyma.models import Account
from kyma.services import ledger


def make_account(micros: int = 0, email: str | None = None) -> int:
    """A new account's id, granted `micros` of credit (none when 0), under a random email unless given."""
    account = Account.create(email=email or f"{uuid.uuid4().hex[:10]}@example.com", password_hash="x")
    if micros:
        ledger.add_credit(account.id, micros / 1_000_000, kind="grant")
    return account.id


def balance(gateway, account: dict) -> float:
    """The account's balance in dollars, as GET /v1/credits/balance on the running gateway answers it."""
    r = requests.get(f"{gateway.url}/v1/credits/balance", timeout=10,
                     headers={"Authorization": f"Bearer {account['api_key']}"})
    assert r.status_code == 200, r.text
    return r.json()["balance"]


def limited_key(acct: int, holds: dict[str, int], *, ttl_seconds: int | None = None) -> int:
    """A new key with a credit limit on `acct`, its id; `holds` (request id: micros) are taken and counted
    against it as admission does."""
    from kyma.db import write_transaction
    from kyma.models import ApiKey
    from kyma.services import key_limits
    from kyma.services.accounts import Principal

    key = ApiKey.create(account=acct, key_hash=uuid.uuid4().hex, prefix="k", credit_limit_micros=100_000)
    principal = Principal(acct, "", 0, api_key_id=key.id, key_limit_micros=100_000)
    for rid, amount in holds.items():
        with write_transaction():
            assert key_limits.reserve(principal, amount)
            assert ledger.place_hold(acct, rid, amount, ttl_seconds=ttl_seconds, note=key_limits.hold_note(principal))
    return key.id
