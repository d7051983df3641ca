"""Stored Responses API responses: per account, until they expire; the reaper deletes expired ones."""

from __future__ import annotations

from datetime import timedelta

from kyma.models import StoredResponse, utcnow
from kyma.services import reaper, responses_store
from tests.accounts import make_account

ITEMS = [{"type": "message", "role": "user", "content": "hi"}]


def _response(rid: str) -> dict:
    return {"id": rid, "object": "response", "output": [{"type": "message", "role": "assistant",
                                                           "content": [{"type": "output_text", "text": "hello"}]}]}


def test_a_response_is_read_back_by_its_account_only(backend_db):
    alice, bob = make_account(email="a@example.com"), make_account(email="b@example.com")
    responses_store.save(alice, _response("resp_1"), ITEMS, retention_days=30)
    stored = responses_store.load(alice, "resp_1")
    assert stored.response["id"] == "resp_1" and stored.input_items == ITEMS
    assert stored.conversation() == ITEMS + _response("resp_1")["output"]
    assert responses_store.load(bob, "resp_1") is None
    assert responses_store.delete(bob, "resp_1") is False
    assert responses_store.delete(alice, "resp_1") is True
    assert responses_store.load(alice, "resp_1") is None


def test_zero_retention_keeps_nothing(sqlite_db):
    alice = make_account(email="a@example.com")
    responses_store.save(alice, _response("resp_1"), ITEMS, retention_days=0)
    assert StoredResponse.select().count() == 0


def test_an_expired_response_is_gone_at_once_and_the_reaper_deletes_it(backend_db):
    alice = make_account(email="a@example.com")
    responses_store.save(alice, _response("resp_old"), ITEMS, retention_days=30)
    responses_store.save(alice, _response("resp_new"), ITEMS, retention_days=30)
    StoredResponse.update(expires_at=utcnow() - timedelta(seconds=1)).where(StoredResponse.id == "resp_old").execute()
    assert responses_store.load(alice, "resp_old") is None  # not served while it waits for the reaper
    reaper.run_chores()
    assert [r.id for r in StoredResponse.select()] == ["resp_new"]


def test_init_db_adds_the_table_to_an_existing_database(app):
    from kyma.cli import create_or_migrate_schema
    from kyma.db import database

    with app.app_context():
        database.obj.drop_tables([StoredResponse])
        assert "created table storedresponse" in create_or_migrate_schema()
        assert "storedresponse" in database.obj.get_tables()
