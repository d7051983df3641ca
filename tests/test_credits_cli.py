"""`flask --app app ledger …` / `credits add` and the credits/limits endpoints.

Each command's real command line (a `flask` process, its exit code) is checked once; the other runs of
a command are answered in this process (tests.servers.flask_here), which skips a Python start each.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kyma import procs, sqlite
from tests.conftest import register
from tests.servers import flask_cli, flask_here


def env_for(home: Path) -> dict:
    """The environment of a `flask` command on the database in `home`."""
    env = procs.caller_env()
    env.update(KYMA_INSTANCE_DIR=str(home), KYMA_DATABASE_URL=f"sqlite:///{home / 'kyma.db'}",
               KYMA_SECRET_KEY="test", KYMA_BCRYPT_ROUNDS="4", KYMA_LOG_LEVEL="WARNING")
    return env


@pytest.fixture()
def cli_env(tmp_path, schema_file):
    """The environment of a command on a fresh database with the schema (tmp_path/kyma.db).

    Tests write to it through kyma.sqlite (APSW), the SQLite the in-process commands use: two SQLite
    libraries on one file in one process release each other's locks.
    """
    shutil.copyfile(schema_file, tmp_path / "kyma.db")
    return env_for(tmp_path)


def test_credits_add_and_ledger_check_exit_codes(cli_env, tmp_path):
    con = sqlite.connect(str(tmp_path / "kyma.db"))
    con.execute("INSERT INTO account (email, password_hash, balance_micros, lifetime_purchased_micros, tier, "
                "created_at) VALUES ('a@example.com', 'x', 0, 0, 0, '2026-01-01 00:00:00')")
    assert flask_here(cli_env, "ledger", "check").stdout.strip() == "ledger ok"

    added = flask_cli(cli_env, "credits", "add", "a@example.com", "5", "--idempotency-key", "pay-1")
    assert added.returncode == 0 and "tier 1" in added.stdout, added.stderr
    again = flask_here(cli_env, "credits", "add", "a@example.com", "5", "--idempotency-key", "pay-1")
    assert again.returncode == 0 and "already added" in again.stdout
    granted = flask_here(cli_env, "credits", "add", "a@example.com", "100", "--grant")
    assert granted.returncode == 0 and "tier 1" in granted.stdout  # grants don't raise the tier
    assert con.execute("SELECT balance_micros, lifetime_purchased_micros FROM account").fetchone() == (
        105_000_000, 5_000_000)

    unknown = flask_here(cli_env, "credits", "add", "nobody@example.com", "5")
    assert unknown.returncode != 0 and "No account" in unknown.stderr
    bad = flask_here(cli_env, "credits", "add", "a@example.com", "five")
    assert bad.returncode != 0 and "not an amount" in bad.stderr

    con.execute("UPDATE account SET balance_micros = balance_micros + 1")
    broken = flask_cli(cli_env, "ledger", "check")
    assert broken.returncode == 1 and "sum of entries 105000000" in broken.stderr
    con.close()


def test_ledger_reap_releases_expired_holds(cli_env, tmp_path):
    con = sqlite.connect(str(tmp_path / "kyma.db"))
    con.execute("INSERT INTO account (email, password_hash, balance_micros, lifetime_purchased_micros, tier, "
                "created_at) VALUES ('a@example.com', 'x', 0, 0, 0, '2026-01-01 00:00:00')")
    assert flask_here(cli_env, "credits", "add", "a@example.com", "1", "--grant").returncode == 0
    # A hold a crashed worker left behind: debit, hold entry and Hold row, already expired.
    con.execute("UPDATE account SET balance_micros = balance_micros - 400")
    con.execute("INSERT INTO ledgerentry (account_id, kind, amount_micros, request_id, idempotency_key, note, "
                "created_at) VALUES (1, 'hold', -400, 'req-1', 'req-1:hold', '', '2026-01-01 00:00:00')")
    con.execute("INSERT INTO hold (account_id, request_id, amount_micros, owner, created_at, expires_at) "
                "VALUES (1, 'req-1', 400, 'gone:1', '2026-01-01 00:00:00', '2026-01-01 00:15:00')")
    assert flask_here(cli_env, "ledger", "check").returncode == 1  # a stale open hold is reported
    reaped = flask_cli(cli_env, "ledger", "reap")
    assert reaped.returncode == 0 and "released 1" in reaped.stdout
    assert flask_here(cli_env, "ledger", "check").stdout.strip() == "ledger ok"
    assert con.execute("SELECT balance_micros FROM account").fetchone() == (1_000_000,)
    con.close()


def test_balance_endpoint_follows_purchases(app, client):
    key = register(client, "buyer@example.com")["api_key"]
    auth = {"Authorization": f"Bearer {key}"}
    body = client.get("/v1/credits/balance", headers=auth).get_json()
    assert {k: body[k] for k in ("balance", "currency", "lifetime_purchased", "tier")} == {
        "balance": 0.5, "currency": "USD", "lifetime_purchased": 0.0, "tier": 0}
    with app.app_context():
        from kyma.services import ledger

        ledger.add_credit("buyer@example.com", 50)
    body = client.get("/v1/credits/balance", headers=auth).get_json()
    assert (body["balance"], body["lifetime_purchased"], body["tier"]) == (50.5, 50.0, 2)
    assert body["next_tier"] == {"tier": 3, "min_deposit": 250.0, "purchase_needed": 200.0}
    assert client.get("/v1/credits/balance").status_code == 401


def test_limits_endpoints(app, client):
    key = register(client, "buyer@example.com")["api_key"]
    limits = client.get("/v1/auth/limits", headers={"Authorization": f"Bearer {key}"}).get_json()
    for field in ("tier", "rpm_limit", "rpm_used", "rpm_remaining", "per_model_rpm_limit", "tpm_limit", "tpm_used",
                  "max_single_request", "has_credits", "used_today", "resets_at"):
        assert field in limits
    assert (limits["rpm_limit"], limits["per_model_rpm_limit"], limits["has_credits"]) == (30, 25, True)
    assert client.get("/v1/auth/limits").status_code == 401

    r = client.get("/v1/limits/tiers")
    assert r.status_code == 200 and "public" in r.headers["Cache-Control"]
    tiers = r.get_json()["tiers"]
    assert [(t["tier"], t["min_deposit"], t["rpm"], t["tpm"]) for t in tiers] == [
        (0, 0, 30, 200000), (1, 5, 60, 500000), (2, 50, 120, 2000000), (3, 250, 200, 5000000),
        (4, 1000, 300, 10000000)]


def test_tier_ladder_is_configurable(tmp_path):
    from kyma.services.tiers import TierLadder

    bad = tmp_path / "tiers.json"
    bad.write_text('{"tiers": [{"level": 0, "min_purchased_usd": 1, "rpm": 1, "per_model_rpm": 1, "tpm": 1,'
                   ' "max_tokens_per_request": 1}]}')
    with pytest.raises(ValueError, match="lowest tier"):
        TierLadder.load(bad)
    from kyma.config import DATA

    ladder = TierLadder.load(DATA / "tiers.json")
    assert ladder.for_purchased(4_999_999).level == 0
    assert ladder.for_purchased(5_000_000).level == 1
    assert ladder.for_purchased(10**12).level == 4
    assert ladder.get(9).level == 4
