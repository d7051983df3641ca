"""nbval passes vacuously on a notebook saved without outputs: every committed notebook must be executed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = ("01-quickstart", "02-chat-completions", "03-anthropic-messages", "04-models-and-discovery",
            "05-accounts-credits-limits", "06-reliability")


def _code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def test_every_walkthrough_exists():
    assert [p.stem for p in NOTEBOOKS] == list(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_has_stored_output(path):
    empty = [i for i, c in enumerate(_code_cells(path)) if _source(c).strip() and not c.get("outputs")]
    assert not empty, f"{path.name}: code cells {empty} have no stored output; run jupyter execute --inplace"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stored_errors_and_ran_in_order(path):
    cells = _code_cells(path)
    errors = [i for i, c in enumerate(cells) for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path.name}: code cells {errors} stored an error"
    counts = [c.get("execution_count") for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: not executed top to bottom once"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_last_cell_stops_the_gateway(path):
    assert "gw.stop()" in _source(_code_cells(path)[-1]), f"{path.name}: the last code cell must stop its servers"
