"""Request records for tests: a served one with every field set, and a check of the rows finish() wrote."""

from __future__ import annotations

from datetime import datetime

from kyma.models import Hold, LedgerEntry, RequestLog, RouteOutcome
from kyma.services import ledger
from kyma.services.recording import AttemptRecord, RequestRecord


def served_record(request_id: str, account: int, **extra) -> RequestRecord:
    """A served request's record with every field set (two attempts, the first failed); `extra` overrides."""
    fields = dict(request_id=request_id, endpoint="chat.completions", status=200, account=account,
                  model_requested="alias-x", alias="alias-x", model_served="m1", provider="p1", simulated=True,
                  fallback_layer=1, attempts=2, prompt_tokens=11, completion_tokens=22, cached_tokens=3,
                  cost_micros=1234, latency_ms=45.5, ttft_ms=7.25, stream=True,
                  outcomes=[AttemptRecord("m0", "p0", False, 503, "upstream down " + "x" * 300, 10.0),
                            AttemptRecord("m1", "p1", True, 200, None, 30.5)])
    fields.update(extra)
    return RequestRecord(**fields)


def check_round_trip(acct: int) -> None:
    """The rows finish() wrote for served_record("r1", acct) read back through the models with the record's values and types."""
    log = RequestLog.get(RequestLog.request_id == "r1")
    assert (log.account_id, log.endpoint, log.model_served, log.provider, log.fallback_layer, log.attempts) == (
        acct, "chat.completions", "m1", "p1", 1, 2)
    assert (log.prompt_tokens, log.completion_tokens, log.cached_tokens, log.cost_micros) == (11, 22, 3, 1234)
    assert (log.latency_ms, log.ttft_ms, log.error, log.error_code, log.api_key_id) == (45.5, 7.25, None, None, None)
    assert log.simulated is True and log.stream is True
    assert isinstance(log.created_at, datetime)
    outcomes = list(RouteOutcome.select().order_by(RouteOutcome.id))
    assert [(o.model, o.provider, o.ok, o.status, o.latency_ms) for o in outcomes] == [
        ("m0", "p0", False, 503, 10.0), ("m1", "p1", True, 200, 30.5)]
    assert len(outcomes[0].error) == 200 and outcomes[1].error is None
    assert all(isinstance(o.created_at, datetime) for o in outcomes)
    entries = list(LedgerEntry.select().where(LedgerEntry.request_id == "r1").order_by(LedgerEntry.id))
    assert [(e.kind, e.amount_micros, e.idempotency_key) for e in entries] == [
        ("hold", -5000, "r1:hold"), ("release", 5000, "r1:release"), ("usage", -1234, "r1:usage")]
    assert all(isinstance(e.created_at, datetime) for e in entries)
    hold = Hold.get(Hold.request_id == "r1")
    assert isinstance(hold.closed_at, datetime) and hold.expires_at > hold.created_at
    assert ledger.balance(acct).balance_micros == 1_000_000 - 1234
    assert ledger.check_ledger() == []
