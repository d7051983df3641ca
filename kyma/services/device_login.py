"""Device-code log-in for command-line tools: the CLI polls while a signed-in browser approves.

The CLI asks for a code pair; the user opens the verification page, signs in and approves the
short user code; the CLI's next poll receives a new API key for that account, exactly once.
Both codes are stored only as SHA-256 digests, like keys and session tokens.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from kyma.db import write_transaction
from kyma.errors import NotFound, RateLimited
from kyma.models import Account, DeviceLogin, utcnow
from kyma.services import accounts, counters

DEVICE_CODE_PREFIX = "kd-"
# No vowels or look-alikes: a code read aloud or typed from a terminal cannot spell words or be misread.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
EXPIRES_SECONDS = 900
POLL_INTERVAL_SECONDS = 5
SLOW_DOWN_STEP_SECONDS = 5  # a client polling too fast must wait this much longer from then on
MAX_CODES_PER_HOUR = 30  # per network: the endpoint needs no credential, so it must not fill the table


@dataclass(frozen=True)
class DeviceCode:
    """What POST /v1/auth/device/code answers."""

    device_code: str
    user_code: str
    expires_in: int
    interval: int


@dataclass(frozen=True)
class PendingLogin:
    """A code waiting on the verification page."""

    user_code: str
    client_name: str
    created_at: datetime


@dataclass(frozen=True)
class IssuedKey:
    """The CLI's reward for an approved code: a new API key, shown this once."""

    api_key: str
    api_key_id: int
    account_id: int
    email: str


class DevicePollError(Exception):
    """An OAuth device-flow error code for the poller (authorization_pending, slow_down, …)."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error = error
        self.description = description


def normalize_user_code(code: str) -> str:
    """'bcdf-ghjk', 'BCDFGHJK' and ' BCDF GHJK ' are one code: uppercase letters only."""
    return "".join(ch for ch in str(code).upper() if ch.isalpha())


def _new_user_code() -> str:
    letters = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def start(client_name: str, settings, *, client_ip: str = "", now: datetime | None = None) -> DeviceCode:
    """A new device code and user code, valid for EXPIRES_SECONDS; 429 beyond MAX_CODES_PER_HOUR per network."""
    now = now or utcnow()
    epoch = now.replace(tzinfo=timezone.utc).timestamp()
    count = counters.backend(settings).hit(f"device:net:{accounts.signup_network(client_ip)}", 3600, now=epoch)
    if count.count > MAX_CODES_PER_HOUR:
        wait = count.retry_after(epoch)
        raise RateLimited(f"Too many device log-ins from this network. Try again in {wait} seconds.",
                          headers={"Retry-After": str(wait)}, code="device_code_throttled")
    device_code = DEVICE_CODE_PREFIX + secrets.token_urlsafe(32)
    user_code = _new_user_code()
    DeviceLogin.create(device_hash=accounts.digest(device_code),
                       user_hash=accounts.digest(normalize_user_code(user_code)),
                       client_name=client_name[:100], created_at=now,
                       expires_at=now + timedelta(seconds=EXPIRES_SECONDS), interval=POLL_INTERVAL_SECONDS)
    return DeviceCode(device_code, user_code, EXPIRES_SECONDS, POLL_INTERVAL_SECONDS)


def _live_by_user_code(user_code: str, now: datetime) -> DeviceLogin:
    row = DeviceLogin.get_or_none(DeviceLogin.user_hash == accounts.digest(normalize_user_code(user_code)))
    if row is None or row.expires_at <= now or row.status != "pending":
        raise NotFound("This code is unknown, expired or already used. Start the log-in again in your terminal.",
                       param="code", code="device_code_not_found")
    return row


def pending(user_code: str, *, now: datetime | None = None) -> PendingLogin:
    """The pending log-in a user code names, for the page to show; 404 when there is none."""
    row = _live_by_user_code(user_code, now or utcnow())
    return PendingLogin(normalize_user_code(user_code), row.client_name, row.created_at)


def decide(user_code: str, account_id: int, *, approve: bool, now: datetime | None = None) -> None:
    """Approve (for this account) or deny a pending code; 404 when it is no longer pending."""
    row = _live_by_user_code(user_code, now or utcnow())
    changed = (DeviceLogin.update(status="approved" if approve else "denied", account=account_id if approve else None)
               .where((DeviceLogin.id == row.id) & (DeviceLogin.status == "pending")).execute())
    if not changed:  # decided in another tab a moment ago
        raise NotFound("This code was already used.", param="code", code="device_code_not_found")


def poll(device_code: str, *, now: datetime | None = None) -> IssuedKey:
    """The new API key once the code is approved; otherwise a DevicePollError saying why not yet."""
    now = now or utcnow()
    row = DeviceLogin.get_or_none(DeviceLogin.device_hash == accounts.digest(str(device_code)))
    if row is None:
        raise DevicePollError("invalid_grant", "Unknown device_code.")
    if row.status == "denied":
        raise DevicePollError("access_denied", "The log-in was denied in the browser.")
    if row.status == "consumed" or row.expires_at <= now:
        raise DevicePollError("expired_token", "The device code expired or was used; start again.")
    too_soon = row.last_polled_at is not None and now < row.last_polled_at + timedelta(seconds=row.interval)
    interval = row.interval + SLOW_DOWN_STEP_SECONDS if too_soon else row.interval
    DeviceLogin.update(last_polled_at=now, interval=interval).where(DeviceLogin.id == row.id).execute()
    if too_soon:
        raise DevicePollError("slow_down", f"Polling too fast: wait {interval} seconds between polls.")
    if row.status != "approved":
        raise DevicePollError("authorization_pending", "Waiting for the code to be approved in the browser.")
    return _issue_key(row, now)


def _issue_key(row: DeviceLogin, now: datetime) -> IssuedKey:
    """Mark the code consumed and create the key in one transaction: one approval, one key."""
    with write_transaction():
        if not DeviceLogin.update(status="consumed").where(
                (DeviceLogin.id == row.id) & (DeviceLogin.status == "approved")).execute():
            raise DevicePollError("expired_token", "The device code was already used; start again.")
        name = f"device log-in: {row.client_name or 'CLI'}"[:accounts.MAX_KEY_NAME_CHARS]
        key = accounts.create_key(row.account_id, name, now=now)
    email = Account.get_by_id(row.account_id).email
    return IssuedKey(key.key, key.id, row.account_id, email)


def prune(now: datetime | None = None) -> int:
    """Delete codes an hour past their expiry (decided or not); returns how many."""
    cutoff = (now or utcnow()) - timedelta(hours=1)
    return DeviceLogin.delete().where(DeviceLogin.expires_at < cutoff).execute()
