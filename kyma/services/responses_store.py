"""Stored Responses API responses: kept per account for GET and previous_response_id, until they expire."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from kyma.db import connected, write_transaction
from kyma.models import StoredResponse, utcnow
from kyma.nul import NUL


@dataclass(frozen=True)
class Stored:
    """One stored response: the conversation's input items and the response object."""

    input_items: list
    response: dict

    def conversation(self) -> list:
        """The input items a continuation starts from: this conversation, then this response's output."""
        return self.input_items + list(self.response.get("output") or [])


def save(account_id: int, response: dict, input_items: list, retention_days: float) -> None:
    """Keep a response for `retention_days` (nothing is kept when that is 0)."""
    if retention_days <= 0:
        return
    now = utcnow()
    with connected(), write_transaction():
        StoredResponse.insert(id=response["id"], account=account_id, created_at=now,
                              expires_at=now + timedelta(days=retention_days),
                              input_items=_dumps(input_items), response=_dumps(response)).execute()


def load(account_id: int, response_id: str) -> Stored | None:
    """The account's unexpired response with this id, or None (another account's is None too)."""
    if NUL in response_id:  # no stored id holds one, and PostgreSQL refuses it in a query
        return None
    with connected():
        row = (StoredResponse.select(StoredResponse.input_items, StoredResponse.response)
               .where(StoredResponse.id == response_id, StoredResponse.account == account_id,
                      StoredResponse.expires_at > utcnow()).first())
    if row is None:
        return None
    return Stored(json.loads(row.input_items), json.loads(row.response))


def delete(account_id: int, response_id: str) -> bool:
    """Delete the account's response with this id; False when it has none."""
    if NUL in response_id:  # as in load
        return False
    with connected(), write_transaction():
        gone = StoredResponse.delete().where(StoredResponse.id == response_id,
                                             StoredResponse.account == account_id).execute()
    return gone > 0


def delete_expired() -> int:
    """Delete every response past its expiry (the reaper's chore); returns how many."""
    with write_transaction():
        return StoredResponse.delete().where(StoredResponse.expires_at <= utcnow()).execute()


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
