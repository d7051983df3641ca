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
