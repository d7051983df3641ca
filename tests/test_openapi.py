"""The served OpenAPI contract: valid, a superset of the seed, and in step with the app's /v1 routes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import schemathesis

from kyma.config import DATA

# A copy of the contract we were given, kept in the repository so a fresh clone can run this test.
SEED = Path(__file__).parent / "data" / "kyma-openapi.seed.json"
IGNORED_METHODS = {"HEAD", "OPTIONS"}

# Documented operations whose views are still being written (none today: chat, messages, credits and
# auth have all landed). Add an entry only while a view is in flight; the test below flags stale ones.
PLANNED: set[tuple[str, str]] = set()


def spec() -> dict:
    return json.loads((DATA / "openapi.json").read_text())


def documented_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in spec()["paths"].items() for method in item}


def routed_operations(app) -> set[tuple[str, str]]:
    ops = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/") or rule.endpoint == "static":
            continue
        # /v1/models/<path:model_id> → /models/{model_id}
        path = re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule.rule[len("/v1"):])
        ops |= {(m, path) for m in rule.methods - IGNORED_METHODS}
    return ops


def test_spec_is_valid_openapi_3_1():
    doc = spec()
    assert doc["openapi"].startswith("3.1") and doc["servers"] == [{"url": "/v1", "description": "This gateway"}]
    schemathesis.openapi.from_dict(doc).validate()


def test_every_route_is_documented_and_every_documented_operation_is_routed(app):
    routed, documented = routed_operations(app), documented_operations()
    assert routed - documented == set(), "routes missing from kyma/data/openapi.json"
    assert documented - routed - PLANNED == set(), "documented operations with no route"


def test_planned_allow_list_has_no_stale_entries(app):
    assert PLANNED & routed_operations(app) == set(), "these views landed: drop them from PLANNED"


def test_spec_is_a_superset_of_the_seed():
    seed, ours = json.loads(SEED.read_text()), spec()
    for path, item in seed["paths"].items():
        for method, operation in item.items():
            assert path in ours["paths"] and method in ours["paths"][path], (method, path)
            assert ours["paths"][path][method]["operationId"] == operation["operationId"]
    seed_model = set(seed["components"]["schemas"]["Model"]["properties"])
    assert seed_model <= set(ours["components"]["schemas"]["Model"]["properties"])


def test_error_responses_use_the_error_schema():
    doc = spec()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                if "$ref" in response:
                    response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                schema = response["content"]["application/json"]["schema"]["$ref"]
                expected = ("AnthropicError" if path.startswith("/messages")
                            else "DeviceTokenError" if path == "/auth/device/token"  # the OAuth device flow's shape
                            else "Error")
                assert schema.endswith("/" + expected), (method, path, status)


def test_served_document_is_the_file(client):
    assert client.get("/v1/openapi.json").get_json() == spec()
