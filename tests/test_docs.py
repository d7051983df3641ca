"""Conventions that are easy to let slip, as failing tests: documented settings, the front door, layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

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
    """Every module a file imports, `from a import b` counting as both a and a.b."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


# What each layer must not import: dependencies point down (edges → chat → services → providers,
# translate → models and db). "kyma.chat." with its dot forbids the package's insides, not its
# entry point: an edge calls chat.serve and never runs an attempt itself.
FORBIDDEN = {
    "api": ("kyma.chat.", "kyma.providers"),
    "web": ("kyma.chat.", "kyma.providers"),
    "chat": ("kyma.api", "kyma.web", "flask"),
    "services": ("kyma.api", "kyma.web", "kyma.chat"),
    "providers": ("kyma.api", "kyma.web", "kyma.chat", "kyma.services", "kyma.models", "kyma.db", "flask", "peewee"),
    "translate": ("kyma.api", "kyma.web", "kyma.chat", "kyma.services", "kyma.providers", "kyma.models", "kyma.db",
                  "flask", "peewee"),
    "sim": ("kyma.api", "kyma.web", "kyma.chat", "kyma.services", "kyma.models", "kyma.db"),
}


def _forbidden(name: str, rule: str) -> bool:
    if rule.endswith("."):
        return name.startswith(rule)
    return name == rule or name.startswith(rule + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_depend_downwards_only(layer):
    """No module imports a layer above its own (or, at the edges, the chat pipeline's insides)."""
    for path in (ROOT / "kyma" / layer).glob("*.py"):
        bad = {m for m in _imports(path) if any(_forbidden(m, rule) for rule in FORBIDDEN[layer])}
        assert not bad, f"{layer}/{path.name} imports {sorted(bad)}"
