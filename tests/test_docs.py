"""Conventions that are easy to let slip, as failing tests: documented settings, the front door, layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kyma.config import ENVIRONMENT_VARIABLES, SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _variables_read_by(paths) -> set[str]:
    found = set()
    for path in paths:
        found |= set(re.findall(r'"(KYMA_[A-Z0-9_]+)"', path.read_text()))
    return found


def _readme_settings() -> dict[str, str]:
    """README.md's settings table: variable to its default cell."""
    rows = re.findall(r"^\| `(KYMA_[A-Z0-9_]+)` \| (.*?) \| .* \|$", README, re.M)
    assert rows, "README.md has no settings table"
    return dict(rows)


def test_the_readme_settings_table_is_the_settings_table():
    documented = _readme_settings()
    declared = {s.env: s for s in SETTINGS}
    assert sorted(set(declared) - set(documented)) == [], "settings missing from README.md's table"
    assert sorted(set(documented) - set(declared)) == [], "README.md documents settings that do not exist"
    wrong = {env: (documented[env], s.documented_default) for env, s in declared.items()
             if documented[env] != s.documented_default}
    assert not wrong, f"README default differs from kyma/config.py (README, code): {wrong}"


def test_each_documented_default_is_the_value_an_unset_variable_gives(tmp_path):
    # The default cell is what the README promises; an empty environment must give that value.
    settings = Settings.from_env({"instance_dir": tmp_path, "secret_key": "s"}, environ={})
    for s in SETTINGS:
        if isinstance(s.default, str) and s.shown is None:
            assert getattr(settings, s.field) == (s.parse or s.type)(s.default), s.env
    assert settings.port == 8080 and settings.simulators is True and settings.secure_cookies is False
    assert settings.database_url == f"sqlite:///{tmp_path / 'kyma.db'}" and settings.allowed_hosts == ()


def test_a_bad_setting_is_refused_with_its_variable_named(tmp_path):
    with pytest.raises(ValueError, match="KYMA_PORT"):
        Settings.from_env({"instance_dir": tmp_path, "secret_key": "s"}, environ={"KYMA_PORT": "eighty"})
    with pytest.raises(KeyError):
        Settings.from_env({"no_such_setting": 1})
    capped = Settings.from_env({"instance_dir": tmp_path, "secret_key": "s"}, environ={"KYMA_MAX_ATTEMPTS": "50"})
    assert capped.max_attempts == 8


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
