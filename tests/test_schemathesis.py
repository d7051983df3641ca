"""schemathesis against a real gunicorn gateway, on the operations of its served contract that need no upstream."""

from __future__ import annotations

import re

import pytest

from tests import pg
from tests.fuzzing import schemathesis
from tests.servers import gateway_env, start_gateway

pytestmark = pytest.mark.integration  # real gunicorn processes: run again on PostgreSQL + Redis

# Discovery, catalog, credits, auth and stored-response operations. Chat and messages need upstreams and are covered by
# their own integration tests; so is polling a device code, whose every answer but one is a 400 by design.
# The regexes are matched against the path below the /v1 server URL.
# Those that read or write storage are fuzzed again on PostgreSQL + Redis: what that backend adds is its own
# column limits, types and constraints, which SQLite does not enforce. The rest answer from files whatever
# the backend (catalog, pricing, tiers, config, the contract itself): the SQLite pass covers them.
STORED = r"models/uptime|status|credits/balance|responses/|auth/(register|login|logout|me|keys|limits|device/code)"
OPERATIONS = {  # backend: (regex, how many operations it selects)
    "sqlite": (rf"^/(models|config|capabilities|pricing|credits/pricing|limits/tiers|openapi\.json|{STORED})", 25),
    "postgres": (rf"^/({STORED})", 16),
}


@pytest.fixture()
def discovery_gateway(tmp_path):
    """A gateway with no reachable upstreams (sim port 1): only discovery and auth answer usefully."""
    proc = start_gateway(tmp_path, gateway_env(tmp_path, sim_base_port=1))
    yield proc
    proc.stop()


def test_schemathesis_finds_no_failures(discovery_gateway, tmp_path):
    operations, count = OPERATIONS["postgres" if pg.postgres_pass() else "sqlite"]
    out = schemathesis(discovery_gateway.url, tmp_path, "fuzz@example.com", "--max-examples", "15",
                       "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "10",
                       "--include-path-regex", operations, timeout=300)
    assert re.search(rf"Tested: {count}\b", out)  # the run really exercised every selected operation
