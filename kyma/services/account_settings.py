"""What an account holder changes about their own account: password, sessions, the account itself."""

from __future__ import annotations

from datetime import datetime

from kyma.db import write_transaction
from kyma.errors import AuthenticationFailed, InvalidRequest
from kyma.models import Account, ApiKey, SessionToken, utcnow
from kyma.services.accounts import validate_password
from kyma.services.passwords import check_password, hash_password

# A bcrypt hash never looks like this, so no password matches a deleted account's.
UNUSABLE_PASSWORD_HASH = "!deleted"


def _confirm_password(account: Account, password) -> None:
    if not isinstance(password, str) or not check_password(password, account.password_hash):
        raise AuthenticationFailed("The current password is not correct.", param="current_password",
                                   code="wrong_password")


def active_sessions(account_id: int, *, now: datetime | None = None) -> int:
    """How many unexpired, unrevoked sessions the account has (this browser's included)."""
    now = now or utcnow()
    return (SessionToken.select().where((SessionToken.account == account_id) & SessionToken.revoked_at.is_null()
                                        & (SessionToken.expires_at > now)).count())


def end_other_sessions(account_id: int, keep_session_id: int | None, *, now: datetime | None = None) -> int:
    """Revoke every session of the account but `keep_session_id`; returns how many were ended."""
    others = (SessionToken.account == account_id) & SessionToken.revoked_at.is_null()
    if keep_session_id is not None:
        others &= SessionToken.id != keep_session_id
    return SessionToken.update(revoked_at=now or utcnow()).where(others).execute()


def change_password(account_id: int, current: str, new: str, settings, *, keep_session_id: int | None) -> int:
    """Check the current password, store the new one and end every other session (returns how many)."""
    account = Account.get_by_id(account_id)
    _confirm_password(account, current)
    validate_password(new)
    if new == current:
        raise InvalidRequest("The new password is the same as the current one.", param="new_password",
                             code="password_unchanged")
    new_hash = hash_password(new, settings.bcrypt_rounds)  # slow: outside the transaction
    with write_transaction():
        Account.update(password_hash=new_hash).where(Account.id == account_id).execute()
        # Someone who knew the old password may hold a session: it ends with the password.
        return end_other_sessions(account_id, keep_session_id)


def delete_account(account_id: int, password: str, *, now: datetime | None = None) -> None:
    """Close the account for good: keys and sessions revoked, email and password erased.

    The row, its ledger and its request log stay: they are the operator's record of money that
    moved. The email becomes a placeholder, so the address can sign up again.
    """
    now = now or utcnow()
    account = Account.get_by_id(account_id)
    _confirm_password(account, password)
    with write_transaction():
        ApiKey.update(revoked_at=now).where((ApiKey.account == account_id) & ApiKey.revoked_at.is_null()).execute()
        SessionToken.update(revoked_at=now).where(
            (SessionToken.account == account_id) & SessionToken.revoked_at.is_null()).execute()
        Account.update(email=f"deleted-{account_id}@deleted.invalid", password_hash=UNUSABLE_PASSWORD_HASH).where(
            Account.id == account_id).execute()
