"""A stored conversation listed as Responses input items: shapes, stable ids, paging and its 400s."""

from __future__ import annotations

import pytest

from kyma.errors import InvalidRequest
from kyma.translate.responses_items import listed_items, page

ITEMS = [{"type": "message", "role": "user", "content": "hi"},
         {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
         {"type": "function_call_output", "call_id": "c1", "output": "ok"},
         {"id": "msg_kept", "type": "message", "role": "assistant",
          "content": [{"type": "output_text", "text": "done"}]}]


def test_items_get_types_parts_and_ids_from_their_place():
    listed = listed_items(ITEMS, "resp_abc")
    assert [i["id"] for i in listed] == ["msg_abc_0", "fc_abc_1", "fco_abc_2", "msg_kept"]
    assert listed[0]["content"] == [{"type": "input_text", "text": "hi"}] and listed[0]["status"] == "completed"
    assert listed_items(ITEMS, "resp_abc") == listed  # the same ids on every call: pages stay stable
    assert listed_items([{"role": "assistant", "content": "x"}], "resp_z")[0]["content"][0]["type"] == "output_text"


def test_pages_newest_first_with_a_cursor():
    listed = listed_items(ITEMS, "resp_abc")
    first = page(listed, after=None, limit="2", order=None)
    assert [i["id"] for i in first["data"]] == ["msg_kept", "fco_abc_2"] and first["has_more"]
    rest = page(listed, after=first["last_id"], limit=None, order="desc")
    assert [i["id"] for i in rest["data"]] == ["fc_abc_1", "msg_abc_0"] and not rest["has_more"]
    assert page(listed, after=None, limit=None, order="asc")["first_id"] == "msg_abc_0"


@pytest.mark.parametrize("args, param", [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"),
                                         ({"limit": "x"}, "limit"), ({"order": "up"}, "order"),
                                         ({"after": "msg_nope"}, "after")])
def test_bad_paging_is_a_400_naming_the_parameter(args, param):
    with pytest.raises(InvalidRequest) as err:
        page(listed_items(ITEMS, "resp_abc"), **{"after": None, "limit": None, "order": None, **args})
    assert err.value.param == param
