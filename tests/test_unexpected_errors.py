"""An unexpected exception under /v1 is a 500 in the protocol's shape, and its request is logged once:
a hold it took is given back, and an answer billed before the edge failed keeps its charge and says so."""

from __future__ import annotations

import anthropic
import httpx2
import openai
import pytest

from kyma.models import Hold, LedgerEntry, RequestLog
from kyma.services import ledger
from tests.conftest import register

CHAT = {"model": "kimi-k2.5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def _injected(*_args, **_kwargs):
    raise RuntimeError("injected fault")


def _sdks(app, key: str) -> tuple[openai.OpenAI, anthropic.Anthropic]:
    """Both SDKs, talking to the app in this process."""
    transport = httpx2.WSGITransport(app=app)
    return (openai.OpenAI(base_url="http://localhost/v1", api_key=key, max_retries=0,
                          http_client=httpx2.Client(transport=transport)),
            anthropic.Anthropic(base_url="http://localhost", api_key=key, max_retries=0,
                                http_client=httpx2.Client(transport=transport)))


def _rows(app, request_id: str) -> list[tuple]:
    with app.app_context():
        return list(RequestLog.select(RequestLog.status, RequestLog.error_code, RequestLog.account_id,
                                      RequestLog.endpoint, RequestLog.cost_micros)
                    .where(RequestLog.request_id == request_id).tuples())


def _money(app, request_id: str, account: int) -> tuple[list[str], int, list]:
    """The request's ledger entry kinds, the account's balance, and check_ledger's findings."""
    with app.app_context():
        kinds = [e.kind for e in LedgerEntry.select().where(LedgerEntry.request_id == request_id)
                 .order_by(LedgerEntry.id)]
        assert Hold.select().where(Hold.closed_at.is_null()).count() == 0, "no hold is left to the reaper"
        return kinds, ledger.balance(account).balance_micros, ledger.check_ledger()


@pytest.fixture()
def app(make_app, backend_db):
    """The conftest's app, once on SQLite and once on PostgreSQL: the hold's release and the rows differ."""
    app = make_app(database_url=backend_db, signup_max_per_hour=100000, allowed_hosts=("localhost",))
    app.config["TESTING"] = True
    return app


@pytest.fixture()
def user(app):
    reg = register(app.test_client(), "boom@example.com")
    with app.app_context():
        start = ledger.balance(int(reg["user_id"])).balance_micros
    return {"key": reg["api_key"], "account": int(reg["user_id"]), "start": start}


def _openai_error(body: dict) -> dict:
    return body["error"]


def _anthropic_error(body: dict) -> dict:
    assert body["type"] == "error"
    return body["error"]


# (endpoint, how to ask with the SDKs, the error its SDK raises, where its body keeps the error object)
PROTOCOLS = {
    "chat": (lambda sdks: sdks[0].chat.completions.create(**CHAT), openai.InternalServerError, _openai_error),
    "messages": (lambda sdks: sdks[1].messages.create(**CHAT), anthropic.InternalServerError, _anthropic_error),
}


@pytest.mark.parametrize("endpoint", sorted(PROTOCOLS))
def test_a_fault_after_the_hold_is_a_logged_500_in_the_protocols_shape(app, user, monkeypatch, endpoint):
    ask, error, error_object = PROTOCOLS[endpoint]
    monkeypatch.setattr("kyma.chat.complete", _injected)  # the hold is taken; then the gateway breaks
    with pytest.raises(error) as caught:
        ask(_sdks(app, user["key"]))
    assert caught.value.status_code == 500
    err = error_object(caught.value.response.json())
    assert err["type"] == "api_error" and "not billed" in err["message"]
    rid = caught.value.response.headers["X-Request-Id"]
    assert _rows(app, rid) == [(500, "internal_error", user["account"], endpoint, 0)]
    assert _money(app, rid, user["account"]) == (["hold", "release"], user["start"], [])


def test_a_fault_outside_the_pipeline_is_logged_as_the_request_itself(app, user, monkeypatch):
    monkeypatch.setattr("kyma.api.catalog._model_filter", _injected)
    oai, _ = _sdks(app, user["key"])
    with pytest.raises(openai.InternalServerError) as caught:
        oai.models.list()
    rid = caught.value.response.headers["X-Request-Id"]
    assert [(status, code) for status, code, *_ in _rows(app, rid)] == [(500, "internal_error")]


def test_a_call_that_logged_its_own_fault_is_not_logged_again(app, user, monkeypatch):
    # Inside the attempt loop: the pipeline releases the hold and logs the 500 itself, then re-raises.
    monkeypatch.setattr("kyma.chat.attempts.Attempts.run", _injected)
    oai, _ = _sdks(app, user["key"])
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(**CHAT)
    assert "not billed" in caught.value.body["message"], "the handler logged nothing twice, so it did not fail"
    rid = caught.value.response.headers["X-Request-Id"]
    assert _rows(app, rid) == [(500, "internal_error", user["account"], "chat", 0)]
    assert _money(app, rid, user["account"]) == (["hold", "release"], user["start"], [])


def test_every_call_of_a_fan_out_is_logged_once_when_one_of_them_breaks(app, user, monkeypatch):
    from kyma import chat

    real, calls = chat.complete, []

    def second_breaks(rt, prep):
        calls.append(prep.call.request_id)
        if len(calls) == 2:
            raise RuntimeError("injected fault")
        return real(rt, prep)  # no upstream listens here: a 502 the call logs itself

    monkeypatch.setattr("kyma.chat.complete", second_breaks)
    oai, _ = _sdks(app, user["key"])
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(**CHAT, n=2)
    assert len(calls) == 2
    rows = [_rows(app, rid) for rid in calls]
    assert [len(r) for r in rows] == [1, 1]
    assert rows[0][0][0] == 502 and rows[1][0][:2] == (500, "internal_error")
    with app.app_context():
        assert Hold.select().where(Hold.closed_at.is_null()).count() == 0
        assert ledger.check_ledger() == []


@pytest.mark.integration
def test_an_answer_billed_before_the_edge_failed_keeps_its_charge_and_its_row_says_500(make_app, simulators,
                                                                                       monkeypatch):
    base, _ = simulators
    app = make_app(sim_base_port=base)
    reg = register(app.test_client(), "billed@example.com")
    account = int(reg["user_id"])
    with app.app_context():
        start = ledger.balance(account).balance_micros
    monkeypatch.setattr("kyma.api.messages.openai_to_anthropic_response", _injected)
    _, claude = _sdks(app, reg["api_key"])
    with pytest.raises(anthropic.InternalServerError) as caught:
        claude.messages.create(**dict(CHAT, model="glm-4.5-air"))
    assert "billed" in caught.value.message and "not billed" not in caught.value.message
    rid = caught.value.response.headers["X-Request-Id"]
    [(status, code, acct, endpoint, cost)] = _rows(app, rid)
    assert (status, code, acct, endpoint) == (500, "internal_error", account, "messages") and cost > 0
    assert _money(app, rid, account) == (["hold", "release", "usage"], start - cost, [])
