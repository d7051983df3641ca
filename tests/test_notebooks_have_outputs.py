"""nbval passes vacuously on a notebook saved without outputs: every committed notebook must be executed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ("01-quickstart", "02-chat-completions", "03-anthropic-messages", "04-models-and-discovery",
            "05-accounts-credits-limits", "06-reliability", "07-responses-embeddings")


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


# What each SDK method sends, keyed by the call without its client variable.
SDK_OPERATIONS = {
    "chat.completions.create": ("post", "/chat/completions"),
    "chat.completions.parse": ("post", "/chat/completions"),
    "chat.completions.stream": ("post", "/chat/completions"),
    "completions.create": ("post", "/completions"),
    "embeddings.create": ("post", "/embeddings"),
    "responses.create": ("post", "/responses"),
    "responses.stream": ("post", "/responses"),
    "responses.parse": ("post", "/responses"),
    "responses.retrieve": ("get", "/responses/{response_id}"),
    "responses.delete": ("delete", "/responses/{response_id}"),
    "responses.input_items.list": ("get", "/responses/{response_id}/input_items"),
    "messages.create": ("post", "/messages"),
    "messages.stream": ("post", "/messages"),
    "messages.count_tokens": ("post", "/messages/count_tokens"),
    "models.list": ("get", "/models"),
    "models.retrieve": ("get", "/models/{model_id}"),
}
_SDK_CALL = re.compile(r"\b\w+\.((?:with_raw_response\.|with_streaming_response\.)?[\w.]+)\(")
_HTTP_CALL = re.compile(r"\b(get|post|put|patch|delete)\(\s*f?[\"'][^\"']*?(/v1/[^\"'?\s]*)")


def _contract_operations() -> list[tuple[str, str]]:
    spec = json.loads((ROOT / "kyma" / "data" / "openapi.json").read_text())
    ops = [(m, p) for p, item in spec["paths"].items() for m in item if m in ("get", "post", "put", "patch", "delete")]
    return sorted(ops, key=lambda op: op[1].count("{"))  # literal paths first: /models/recommend before /models/{id}


def _exercised(source: str, operations: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The contract operations a notebook's code calls, through an SDK or over plain HTTP."""
    found = set()
    for call in _SDK_CALL.findall(source):
        call = call.replace("with_raw_response.", "").replace("with_streaming_response.", "")
        if call in SDK_OPERATIONS:
            found.add(SDK_OPERATIONS[call])
    for method, path in _HTTP_CALL.findall(source):
        for op_method, template in operations:
            pattern = "/v1" + re.sub(r"\{\w+\}", "[^/]+", template)
            if op_method == method and re.fullmatch(pattern, path):
                found.add((op_method, template))
                break
    return found


def test_exercised_finds_sdk_and_http_calls():
    ops = [("get", "/models/recommend"), ("get", "/models/{model_id}"), ("post", "/chat/completions")]
    src = 'client.chat.completions.with_raw_response.create(x)\nget("/v1/models/recommend", task="code")'
    assert _exercised(src, ops) == {("post", "/chat/completions"), ("get", "/models/recommend")}


def test_every_operation_of_the_contract_is_exercised_by_a_notebook():
    """The notebooks validate the served contract: each of its operations runs in at least one."""
    operations = _contract_operations()
    covered = set().union(*(_exercised("\n".join(_source(c) for c in _code_cells(p)), operations)
                            for p in NOTEBOOKS))
    missing = [f"{m.upper()} /v1{p}" for m, p in operations if (m, p) not in covered]
    assert not missing, f"no notebook exercises {missing}"
