"""The real Claude Code and Codex CLI binaries (from npm, installed by `make setup`) against the gateway."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.servers import db_rows

# The CLIs' own protocols; what they are billed and logged goes the way the chat, messages and Responses
# tests check on PostgreSQL too.
pytestmark = [pytest.mark.integration, pytest.mark.client_protocol]

BIN = Path(__file__).resolve().parent.parent / ".venv-agents" / "node_modules" / ".bin"


def agent(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed: `make setup` installs it with npm when npm is available")
    return path


def run(cmd: list, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    # HOME and the agents' own config dirs point into the test's folder: nothing of the user's is read.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "CODEX_"))}
    return subprocess.run([str(c) for c in cmd], env={**base, "HOME": str(cwd), **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def requests_of(gateway, account) -> list[tuple]:
    return db_rows(gateway.env, "SELECT r.endpoint, r.model_requested, r.status FROM requestlog r "
                   "JOIN account a ON a.id = r.account_id WHERE a.email = {p} ORDER BY r.id", account["email"])


def test_claude_code_answers_headless_through_the_gateway(gateway, account, tmp_path):
    out = run([agent("claude"), "-p", "say exactly: ready", "--output-format", "json", "--tools="],
              {"ANTHROPIC_BASE_URL": gateway.url, "ANTHROPIC_AUTH_TOKEN": account["api_key"]}, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["is_error"] is False and result["result"].startswith("ready"), result
    served = [row for row in requests_of(gateway, account) if row[0] == "messages"]
    assert served and all(status == 200 for _, _, status in served), served
    assert any(model.startswith("claude-") for _, model, _ in served)  # its own default model name, mapped


def test_codex_exec_answers_through_the_responses_api(gateway, account, tmp_path):
    provider = {"name": '"Kyma"', "base_url": f'"{gateway.url}/v1"', "env_key": '"KYMA_API_KEY"',
                "wire_api": '"responses"'}
    config = [arg for k, v in provider.items() for arg in ("-c", f"model_providers.kyma.{k}={v}")]
    out = run([agent("codex"), "exec", "--skip-git-repo-check", "-m", "kimi-k2.5", "-c", "model_provider=kyma",
               *config, "say exactly: ready"],
              {"KYMA_API_KEY": account["api_key"], "CODEX_HOME": str(tmp_path)}, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "ready", out.stdout
    assert requests_of(gateway, account) and all(
        (endpoint, status) == ("responses", 200) for endpoint, _, status in requests_of(gateway, account))
