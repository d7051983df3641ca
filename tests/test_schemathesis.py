"""schemathesis against a real gunicorn gateway, driven by the served /v1/openapi.json."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import register
from tests.servers import BIN, db_rows, gateway_env, start_gateway

pytestmark = pytest.mark.integration  # real gunicorn processes: run again on PostgreSQL + Redis

# Discovery, catalog, credits, auth and stored-response operations. Chat and messages need upstreams and are covered by
# their own integration tests; so is polling a device code, whose every answer but one is a 400 by design.
# The regex is matched against the path below the /v1 server URL.
OPERATIONS = (r"^/(models|config|capabilities|pricing|credits/(pricing|balance)|limits/tiers|status"
              r"|openapi\.json|responses/|auth/(register|login|logout|me|keys|limits|device/code))")


@pytest.fixture()
def discovery_gateway(tmp_path):
    """A gateway with no reachable upstreams (sim port 1): only discovery and auth answer usefully."""
    proc = start_gateway(tmp_path, gateway_env(tmp_path, sim_base_port=1))
    yield proc
    proc.stop()


def schemathesis(url: str, tmp_path, email: str, *options: str, timeout: float) -> str:
    """Run schemathesis on the served contract with a fresh account's key; its output, once it passed."""
    key = register(url, email)["api_key"]
    cmd = [str(BIN / "schemathesis"), "run", f"{url}/v1/openapi.json", "--seed", "1", "--no-color", *options,
           "-H", f"Authorization: Bearer {key}"]
    # cwd is a tmp dir so .hypothesis/ and .schemathesis/ never land in the repository. The timeout only
    # stops a hung run: on two cores shared by the passes of `make test` and other work, a shorter one killed
    # runs that were making progress.
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    return run.stdout


def test_schemathesis_finds_no_failures(discovery_gateway, tmp_path):
    out = schemathesis(discovery_gateway.url, tmp_path, "fuzz@example.com", "--max-examples", "15",
                       "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "10",
                       "--include-path-regex", OPERATIONS, timeout=300)
    assert "Tested: 25" in out  # the run really exercised every selected operation


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
    assert "Tested: 3" in out
    served = db_rows(upstream_gateway.env, "SELECT endpoint, COUNT(*) FROM requestlog WHERE status = 200 "
                     "GROUP BY endpoint ORDER BY endpoint")
    # Answers came from the upstream, not only from validation (fuzzed Responses bodies rarely pass it;
    # the Responses integration tests serve that endpoint).
    assert {endpoint for endpoint, _ in served} >= {"completions", "embeddings"}, served
