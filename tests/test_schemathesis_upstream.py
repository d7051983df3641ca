"""schemathesis against a real gunicorn gateway in front of the simulators: the operations that reach an upstream.

A module of its own, so that pytest workers run it beside the other schemathesis run rather than after it.
"""

from __future__ import annotations

import re

import pytest

from tests.fuzzing import schemathesis
from tests.servers import db_rows, gateway_env, start_gateway

pytestmark = pytest.mark.integration  # real gunicorn processes: run again on PostgreSQL + Redis

# Endpoints that reach an upstream (the simulators here). Their request schemas cannot say everything the
# gateway checks (a model's own dimensions range, which models take a suffix), so the run checks what the
# contract promises of every answer: no server error, a documented status, content type and body shape.
UPSTREAM_OPERATIONS = r"^/(embeddings|completions|responses)$"
ANSWER_CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture()
def upstream_gateway(tmp_path, simulators):
    """A gateway in front of the simulators whose tier 0 is wide enough that fuzzing is not all 429s."""
    import json

    from kyma.config import DATA

    ladder = json.loads((DATA / "tiers.json").read_text())
    ladder["tiers"][0].update(rpm=100_000, per_model_rpm=100_000, tpm=100_000_000)
    (tmp_path / "tiers.json").write_text(json.dumps(ladder))
    base, _ = simulators
    proc = start_gateway(tmp_path, gateway_env(tmp_path, base, KYMA_TIERS=str(tmp_path / "tiers.json")))
    yield proc
    proc.stop()


def test_upstream_backed_operations_answer_within_the_contract(upstream_gateway, tmp_path):
    out = schemathesis(upstream_gateway.url, tmp_path, "fuzz-up@example.com", "--max-examples", "10",
                       "--phases", "examples,coverage,fuzzing", "--request-timeout", "20",
                       "--include-path-regex", UPSTREAM_OPERATIONS, "--checks", ANSWER_CHECKS, timeout=300)
    assert re.search(r"Tested: 3\b", out)
    served = db_rows(upstream_gateway.env, "SELECT endpoint, COUNT(*) FROM requestlog WHERE status = 200 "
                     "GROUP BY endpoint ORDER BY endpoint")
    # Answers came from the upstream, not only from validation (fuzzed Responses bodies rarely pass it;
    # the Responses integration tests serve that endpoint).
    assert {endpoint for endpoint, _ in served} >= {"completions", "embeddings"}, served
