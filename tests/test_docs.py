"""Conventions that are easy to let slip, as failing tests: documented settings, the front door, layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from kyma.config import ENVIRONMENT_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _variables_read_by(paths) -> set[str]:
    found = set()
    for path in paths:
        found |= set(re.findall(r'"(KYMA_[A-Z0-9_]+)"', path.read_text()))
    return found


def test_every_setting_is_documented_in_the_readme():
    missing = [name for name in ENVIRONMENT_VARIABLES if f"`{name}`" not in README]
    assert not missing, f"settings not documented in README.md: {missing}"


def test_every_kyma_variable_the_code_reads_is_a_declared_setting():
    read = _variables_read_by((ROOT / "kyma").glob("*.py")) | _variables_read_by((ROOT / "kyma" / "services").glob("*.py"))
    # KYMA_SIM_* belong to the simulator (the launcher passes them on); KYMA_API_KEY is a client's variable.
    undeclared = sorted(name for name in read - set(ENVIRONMENT_VARIABLES) - {"KYMA_API_KEY"}
                        if not name.startswith("KYMA_SIM_"))
    assert not undeclared, f"read but not declared in kyma/config.py: {undeclared}"


def test_every_simulator_variable_is_documented():
    read = _variables_read_by((ROOT / "kyma" / "sim").glob("*.py"))
    missing = sorted(name for name in read if name.startswith("KYMA_SIM_") and f"`{name}`" not in README)
    assert not missing, f"simulator settings not documented in README.md: {missing}"


def test_readme_front_door_commands_exist():
    makefile = (ROOT / "Makefile").read_text()
    assert "make run" in README and "make test" in README
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_layers_depend_downwards_only():
    """services never import the web layers; translate and providers never import Flask or Peewee models."""
    for path in (ROOT / "kyma" / "services").glob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("kyma.api", "kyma.web"))}
        assert not bad, f"{path.name} imports {bad}"
    for folder in ("translate", "providers"):
        for path in (ROOT / "kyma" / folder).glob("*.py"):
            bad = {m for m in _imports(path) if m.split(".")[0] in ("flask", "peewee") or m.startswith(
                ("kyma.api", "kyma.web", "kyma.models", "kyma.db"))}
            assert not bad, f"{folder}/{path.name} imports {bad}"
    for path in (ROOT / "kyma" / "sim").glob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("kyma.api", "kyma.web", "kyma.services", "kyma.models"))}
        assert not bad, f"sim/{path.name} imports the gateway: {bad}"
