"""Who may use the admin console: granted by the CLI or by KYMA_ADMIN_EMAILS at start."""

from __future__ import annotations

import logging

from peewee import fn

from kyma.db import write_transaction
from kyma.errors import NotFound
from kyma.models import Account
from kyma.services import audit

log = logging.getLogger(__name__)


def _account(email: str) -> Account:
    account = Account.get_or_none(fn.LOWER(Account.email) == email.strip().lower())
    if account is None:
        raise NotFound(f"No account {email!r}.")
    return account


def set_admin(email: str, admin: bool, *, actor: str) -> bool:
    """Make an account an admin or not; True when that changed something (each change audited)."""
    with write_transaction():
        account = _account(email)
        # Conditional, so two workers applying KYMA_ADMIN_EMAILS at once change (and audit) it once.
        differs = (Account.is_admin != admin) | Account.is_admin.is_null()
        if not Account.update(is_admin=admin).where((Account.id == account.id) & differs).execute():
            return False
        audit.record(actor, "admin.grant" if admin else "admin.revoke", account.email,
                     {"is_admin": not admin}, {"is_admin": admin})
    return True


def apply_admin_emails(emails: tuple[str, ...]) -> list[str]:
    """Make the listed accounts admins (idempotent); the ones changed now. Missing accounts are skipped."""
    changed = []
    for email in emails:
        try:
            if set_admin(email, True, actor="KYMA_ADMIN_EMAILS"):
                changed.append(email)
        except NotFound:
            log.info("KYMA_ADMIN_EMAILS names %s, which has no account yet", email)
    return changed
