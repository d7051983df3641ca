"""No overspend over real processes: 50 concurrent requests on 2 gevent workers, a balance for 10."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests

from kyma.db import init_db
from kyma.models import LedgerEntry
from kyma.services import ledger
from tests.conftest import register
from tests.gated import FIRST_BYTE_TIMEOUT, GATE, gated
from tests.servers import start_stack, stop_all

pytestmark = pytest.mark.integration

BODY = {"model": "qwen-3-32b", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 256}


@pytest.fixture()
def race_stack(tmp_path):
    """Simulators and a gateway whose tier 0 allows 1000 requests/minute, so only credits can refuse, and
    that waits for a first byte as long as the race may take (tests/gated.py)."""
    tiers = json.loads(open("kyma/data/tiers.json").read())
    tiers["tiers"][0].update(rpm=1000, per_model_rpm=1000)
    (tmp_path / "tiers.json").write_text(json.dumps(tiers))
    gw, sims = start_stack(tmp_path, workers=2, KYMA_TIERS=str(tmp_path / "tiers.json"),
                           KYMA_FIRST_BYTE_TIMEOUT=FIRST_BYTE_TIMEOUT)
    yield gw, gw.env["KYMA_DATABASE_URL"], [sim.url for sim in sims]  # SQLite, or PostgreSQL in the scale-out pass
    stop_all([gw, *sims])


def test_fifty_concurrent_requests_with_credit_for_ten(race_stack):
    gw, url, simulators = race_stack
    reg = register(gw.url, "race@example.com")
    auth = {"Authorization": f"Bearer {reg['api_key']}"}
    probe = requests.post(f"{gw.url}/v1/chat/completions", json=BODY, headers=auth, timeout=30)
    assert probe.status_code == 200, probe.text
    init_db(url)
    hold = -LedgerEntry.get(LedgerEntry.kind == "hold").amount_micros
    account = LedgerEntry.get(LedgerEntry.kind == "hold").account_id
    target = 10 * hold + hold // 2
    delta = target - ledger.balance(account).balance_micros
    ledger.add_credit(account, Decimal(delta) / 1_000_000, kind="adjustment" if delta < 0 else "grant")
    assert ledger.balance(account).balance_micros == target

    # Held at the simulators' gate until all fifty are admitted or refused: every hold before any settle.
    def one():
        return requests.post(f"{gw.url}/v1/chat/completions", json=BODY, headers={**auth, **GATE},
                             timeout=90).status_code

    statuses = gated(simulators, [one] * 50)
    assert (statuses.count(200), statuses.count(402)) == (10, 40), statuses
    assert ledger.balance(account).balance_micros >= 0
    assert ledger.check_ledger() == []
