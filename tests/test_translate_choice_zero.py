"""The Messages and Responses stream translators carry choice 0 only: another choice in the same
chunks changes no event."""

from __future__ import annotations

import copy

import pytest

from tests import test_translate_anthropic_golden as anthropic
from tests import test_translate_responses_golden as responses

OTHER = {"index": 1, "delta": {"content": "another choice's text", "reasoning_content": "its thought"},
         "finish_reason": "length"}
STREAMS = [(golden, path) for golden in (anthropic, responses) for path in golden._cases("streams")]


def _with_another_choice(case: dict) -> dict:
    case = copy.deepcopy(case)
    for chunk in case["chunks"]:
        if chunk.get("choices"):
            chunk["choices"].append(copy.deepcopy(OTHER))
    return case


@pytest.mark.parametrize("golden, path", STREAMS, ids=[f"{g.FIXTURES.name}-{p.stem}" for g, p in STREAMS])
def test_a_second_choice_changes_no_event(golden, path):
    expected = path.with_suffix(".sse").read_text()
    assert golden.translate_stream(_with_another_choice(golden._load(path))).decode() == expected
