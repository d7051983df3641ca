"""One schemathesis run, in its own process, on the contract a real gateway serves."""

from __future__ import annotations

import subprocess

from tests.conftest import register
from tests.servers import BIN


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
