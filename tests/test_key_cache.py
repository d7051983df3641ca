"""The per-worker API-key cache: a kept row counts only under the generation it was read with, and
only for its TTL; without an answer from Redis every lookup reads the database."""

from __future__ import annotations

import peewee
import pytest

from kyma.services.key_cache import TTL_SECONDS, KeyCache


class _Redis(Exception):
    pass


class _FakeTransaction:
    """A MULTI/EXEC of SET NX and INCR on the fake's one key."""

    def __init__(self, redis: "_FakeRedis"):
        self.redis, self.commands = redis, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set(self, key: str, value, nx: bool):
        assert nx
        self.commands.append(("SET", key, value, "NX"))
        return self

    def incr(self, key: str):
        self.commands.append(("INCR", key))
        return self

    def execute(self):
        if self.redis.down:
            raise _Redis("connection refused")
        return [self.redis.execute_command(*command) for command in self.commands]


class _FakeRedis:
    """GET, SET NX and INCR on one key, as the pipeliner and its client run them."""

    def __init__(self):
        self.value: bytes | None = None
        self.down = False
        self.client = self

    def execute(self, command: str, key: str):
        if self.down:
            raise _Redis("connection refused")
        assert command == "GET"
        return self.value

    def execute_command(self, command: str, key: str, *args):
        if self.down:
            raise _Redis("connection refused")
        if command == "SET":
            assert args[1:] == ("NX",)
            if self.value is None:
                self.value = str(args[0]).encode()
            return
        assert command == "INCR"
        self.value = str(int(self.value or 0) + 1).encode()
        return int(self.value)

    def pipeline(self, transaction: bool):
        assert transaction
        return _FakeTransaction(self)


@pytest.fixture()
def setup():
    redis, now = _FakeRedis(), [100.0]
    redis.value = b"7"  # a running system's generation
    loads: list[str] = []

    def load(row="row"):
        loads.append(row)
        return row

    cache = KeyCache(redis, "p:auth:generation", (_Redis,), clock=lambda: now[0])
    return cache, redis, now, loads, load


def test_a_kept_row_is_used_until_a_change_anywhere(setup):
    cache, redis, now, loads, load = setup
    assert cache.fetch("h", load) == "row" and cache.fetch("h", load) == "row"
    assert loads == ["row"], "the second lookup used the kept row"
    redis.execute_command("INCR", "p:auth:generation")  # another instance revoked a key
    assert cache.fetch("h", lambda: load("revoked")) == "revoked"
    assert cache.fetch("h", load) == "revoked" and loads == ["row", "revoked"]


def test_this_workers_own_change_drops_its_rows_and_counts_everywhere(setup):
    cache, redis, now, loads, load = setup
    cache.fetch("h", load)
    cache.changed()
    assert redis.value == b"8" and cache.entries == {}


def test_a_kept_row_expires_after_its_ttl(setup):
    cache, redis, now, loads, load = setup
    cache.fetch("h", load)
    now[0] += TTL_SECONDS - 0.001
    cache.fetch("h", load)
    now[0] += 0.002
    cache.fetch("h", load)
    assert len(loads) == 2


def test_without_redis_every_lookup_reads_the_database(setup):
    cache, redis, now, loads, load = setup
    cache.fetch("h", load)
    redis.down = True
    cache.fetch("h", load)
    cache.fetch("h", load)
    assert len(loads) == 3
    cache.changed()  # logged, not raised: the change itself is committed


def test_an_unknown_key_is_not_kept(setup):
    cache, redis, now, loads, load = setup
    assert cache.fetch("nope", lambda: loads.append("miss")) is None
    assert cache.fetch("nope", lambda: loads.append("miss")) is None
    assert loads == ["miss", "miss"]


def test_a_row_read_while_a_change_commits_is_not_used_after_it(setup):
    """The generation is read before the row: a row read just before the change counted keeps the
    older number, so the next lookup reads again."""
    cache, redis, now, loads, load = setup

    def racing_load():
        redis.execute_command("INCR", "p:auth:generation")  # the change counts while the row is read
        return load("old")

    cache.fetch("h", racing_load)
    assert cache.fetch("h", lambda: load("new")) == "new"


def test_a_generation_redis_lost_does_not_bring_back_a_row_read_before_a_change():
    redis, now = _FakeRedis(), [100.0]
    cache = KeyCache(redis, "g", (_Redis,), clock=lambda: now[0])
    state = {"row": "active"}
    for _ in range(2):  # the first lookup starts the generation, the second keeps the row under it
        assert cache.fetch("h", lambda: state["row"]) == "active"
    other = KeyCache(redis, "g", (_Redis,), clock=lambda: now[0])
    state["row"] = "revoked"
    other.changed()  # the revocation, on another worker
    redis.value = None  # Redis restarts empty (or evicts the key)
    now[0] += 1
    assert cache.fetch("h", lambda: state["row"]) == "revoked"
    assert cache.fetch("h", lambda: state["row"]) == "revoked"


def test_a_change_announced_to_a_redis_that_lost_the_generation_never_repeats_a_number():
    redis, now = _FakeRedis(), [100.0]
    cache = KeyCache(redis, "g", (_Redis,), clock=lambda: now[0])
    other = KeyCache(redis, "g", (_Redis,), clock=lambda: now[0])
    state = {"row": "active"}
    other.changed()  # the first change this Redis hears of
    for _ in range(2):
        assert cache.fetch("h", lambda: state["row"]) == "active"  # kept under that generation
    state["row"] = "revoked"
    redis.value = None  # Redis restarts empty before the revocation is announced
    other.changed()
    now[0] += 1
    assert cache.fetch("h", lambda: state["row"]) == "revoked"


# --- every write that changes what a key may do is announced, after its commit ------------------


@pytest.fixture()
def generation(backend_db, monkeypatch):
    """The generation a KeyCache on a fake Redis holds, as the gateway's key cache; a function reading it."""
    from kyma.services import key_cache

    redis = _FakeRedis()
    redis.value = b"0"
    monkeypatch.setattr(key_cache, "_cache", KeyCache(redis, "g", (_Redis,)))
    return lambda: int(redis.value)


def _account_with_key(password: str = "a long password") -> tuple[int, int]:
    from kyma.models import Account
    from kyma.services import accounts
    from kyma.services.passwords import hash_password

    account = Account.create(email=f"{password.replace(' ', '-')}@example.com",
                             password_hash=hash_password(password, 4))
    return account.id, accounts.create_key(account.id, "k").id


def _ladder():
    from kyma.config import DATA
    from kyma.services.tiers import TierLadder

    return TierLadder.load(DATA / "tiers.json")


def _revoke(account, key):
    from kyma.services import accounts

    assert accounts.revoke_key(account, key)


def _limit(account, key):
    from kyma.services import accounts

    accounts.set_key_limits(account, key, {"credit_limit": 5}, None)


def _delete(account, key):
    from kyma.services import account_settings

    account_settings.delete_account(account, "a long password")


def _tier(account, key):
    from kyma.services import admin_accounts

    assert admin_accounts.set_tier("admin@example.com", account, 2, _ladder())


def _suspend(account, key):
    from kyma.services import admin_accounts

    assert admin_accounts.set_suspended("admin@example.com", account, True)


def _purchase(account, key):
    from kyma.services import ledger

    assert ledger.add_credit(account, 5, kind="purchase", ladder=_ladder()).tier == 1


def _any_model_update(account, key):
    from kyma.models import ApiKey, utcnow

    ApiKey.update(expires_at=utcnow()).where(ApiKey.id == key).execute()  # a path that forgot to announce


def _grant_through_the_console(account, key):
    from kyma.services import admin_accounts

    admin_accounts.grant_credit("admin@example.com", account, "60", "form-1", ladder=_ladder())


@pytest.mark.parametrize("change", [_revoke, _limit, _delete, _tier, _suspend, _purchase, _any_model_update])
def test_every_change_to_what_a_key_may_do_is_announced(generation, change):
    account, key = _account_with_key()
    before = generation()
    change(account, key)
    assert generation() > before


def test_writes_that_change_nothing_a_key_may_do_are_not_announced(generation):
    from kyma.services import accounts, ledger

    account, key = _account_with_key()
    before = generation()
    _grant_through_the_console(account, key)  # a grant raises no tier
    assert ledger.place_hold(account, "r1", 1000)
    assert ledger.settle_hold("r1", 400) == 400
    assert accounts.authenticate(accounts.create_key(account, "k2").key) is not None  # stamps last use
    assert generation() == before


def test_a_change_inside_a_callers_transaction_is_announced_after_its_commit_only(generation):
    """Announced before the commit, another worker could read the old row again and keep it under the
    new generation; announced for a transaction rolled back, every worker drops its rows for nothing."""
    from kyma.db import database

    account, key = _account_with_key()
    before = generation()
    with pytest.raises(LookupError):
        with database.obj.atomic():
            _purchase(account, key)
            assert generation() == before
            raise LookupError("the caller's later step failed")
    assert generation() == before
    with database.obj.atomic():
        _purchase(account, key)
        assert generation() == before
    assert generation() == before + 1


def test_the_key_lookup_reads_only_columns_whose_changes_are_announced():
    """A column the kept row carries but whose writes are not announced would stay stale in every worker."""
    import re

    from kyma.models import Account, ApiKey
    from kyma.services.accounts import _KEY_LOOKUP

    selected = re.search(r"SELECT (.*) FROM", _KEY_LOOKUP).group(1).split(", ")
    kept = {f"k.{ApiKey._meta.fields[name].column_name}" for name in ApiKey.kept_columns} | {
        f"a.{Account._meta.fields[name].column_name}" for name in Account.kept_columns}
    # The last-use stamp is kept by the worker that stamps it (key_cache.replace).
    assert set(selected) - kept == {"k.last_used_at"}


def test_no_raw_sql_writes_a_column_of_a_kept_row():
    """Raw SQL bypasses the models' announcement: it may move balances and spend, never what a key may do."""
    import ast
    import re
    from pathlib import Path

    from kyma.models import Account, ApiKey

    kept = {"apikey": {ApiKey._meta.fields[n].column_name for n in ApiKey.kept_columns},
            "account": {Account._meta.fields[n].column_name for n in Account.kept_columns}}
    write = re.compile(r'(UPDATE|DELETE FROM)\s+"?(apikey|account)"?\b(.*?)(?=\bWHERE\b|\bFROM\b|\bRETURNING\b|$)',
                       re.IGNORECASE | re.DOTALL)
    found = []
    for path in Path(__file__).resolve().parents[1].joinpath("kyma").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for verb, table, rest in write.findall(node.value):
                    columns = set(re.findall(r'"?(\w+)"?\s*=(?!=)', rest))
                    found.append((path.name, table.lower()))
                    assert verb.upper() == "UPDATE" and not columns & kept[table.lower()], (path, node.value)
    assert ("ledger.py", "account") in found and ("group_settle.py", "apikey") in found  # the scan sees them


@pytest.mark.parametrize("change", [_limit, _delete, _tier, _suspend, _purchase])
def test_a_change_whose_commit_answer_was_lost_is_announced_all_the_same(generation, monkeypatch, change):
    """It may have landed: a spare announcement costs a lookup, a missing one lets a revoked key work on."""
    from tests.lost_answer import fail_first_commit

    account, key = _account_with_key()
    before = generation()
    fired = fail_first_commit(monkeypatch, "after")
    if change is _purchase:
        change(account, key)  # a credit looks its outcome up and returns
    else:
        with pytest.raises(peewee.OperationalError):  # the others pass the error on
            change(account, key)
    assert fired and generation() > before


def test_a_callback_that_fails_after_its_commit_landed_is_not_run_again(sqlite_db):
    """The COMMIT succeeded and peewee ran the callbacks: their own error is not an unknown outcome."""
    from kyma.db import write_transaction

    ran = []

    def broken():
        raise RuntimeError("a callback's own error")

    with pytest.raises(RuntimeError), write_transaction():
        sqlite_db.execute_sql("CREATE TABLE t (x)")
        sqlite_db.after_commit(lambda: ran.append(1))
        sqlite_db.after_commit(broken)
    assert ran == [1]


def test_a_revocation_outside_a_transaction_whose_answer_was_lost_is_announced(generation, monkeypatch):
    from kyma.db import database
    from tests.lost_answer import lost

    account, key = _account_with_key()
    before, db = generation(), database.obj
    real = db.execute_sql

    def answer_lost(sql, *args, **kwargs):
        cursor = real(sql, *args, **kwargs)
        if sql.lstrip().upper().startswith("UPDATE"):
            raise lost()  # the statement ran (and committed by itself); its answer never came
        return cursor

    monkeypatch.setattr(db, "execute_sql", answer_lost)
    with pytest.raises(peewee.OperationalError):
        _revoke(account, key)
    assert generation() > before


def test_a_change_rolled_back_is_not_announced(generation):
    from kyma.db import write_transaction
    from kyma.models import ApiKey, utcnow

    account, key = _account_with_key()
    before = generation()
    with pytest.raises(ZeroDivisionError), write_transaction():
        ApiKey.update(revoked_at=utcnow()).where(ApiKey.id == key).execute()
        1 / 0
    assert generation() == before
