"""Settle and record a request in one short transaction: ledger, request log and route outcomes."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from kyma.db import connected, write_transaction
from kyma.models import RequestLog, RouteOutcome
from kyma.services import ledger

log = logging.getLogger(__name__)


@dataclass
class AttemptRecord:
    """One upstream attempt's outcome (feeds uptime and status)."""

    model: str
    provider: str
    ok: bool
    status: int | None = None
    error: str | None = None
    latency_ms: float = 0.0


@dataclass
class RequestRecord:
    """Everything the request log keeps about one API request."""

    request_id: str
    endpoint: str
    status: int
    account: int | None = None
    api_key: int | None = None
    model_requested: str = ""
    alias: str | None = None
    model_served: str | None = None
    provider: str | None = None
    simulated: bool = False
    fallback_layer: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_micros: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stream: bool = False
    error: str | None = None
    outcomes: list[AttemptRecord] = field(default_factory=list)


def finish(record: RequestRecord, *, held: bool) -> None:
    """Settle the hold at record.cost_micros (or release it when nothing was served) and log, atomically."""
    row = asdict(record)
    outcomes = row.pop("outcomes")
    if row["error"]:
        row["error"] = row["error"][:1000]
    with connected(), write_transaction():
        if held and record.model_served is not None:
            ledger.settle_hold(record.request_id, record.cost_micros)
        elif held:
            ledger.release_hold(record.request_id, note="request failed")
        RequestLog.insert(**row).execute()
        if outcomes:
            RouteOutcome.insert_many([{**o, "error": (o["error"] or None) and o["error"][:200]}
                                      for o in outcomes]).execute()
