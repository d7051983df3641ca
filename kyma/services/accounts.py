"""Accounts, API keys and session tokens (placeholder seam; the accounts work fills it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account and the credential used (an API key or a session token)."""

    account_id: int
    email: str
    tier: int
    api_key_id: int | None = None
    session_id: int | None = None
