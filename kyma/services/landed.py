"""Which of a batch's writes are in the database, after a COMMIT whose outcome the gateway never learned.

When the connection fails while a batch's COMMIT is under way, the batch may be committed or not.
Running its units again could then hold, charge or log a request twice; not running them could lose
it. Each unit leaves a row keyed by its request id (its hold, its request-log row), so the database
says which landed. For each item these give the writer's result when the item's writes are there,
and None when none of them are (running it again is then safe). Should a late COMMIT still land after
the look, the request id's unique index refuses the second write rather than doubling it.
"""

from __future__ import annotations

from peewee import JOIN

from kyma.models import Hold, RequestLog
from kyma.services.group_settle import Finished
from kyma.services.ledger import HoldRequest


def holds_placed(requests: list[HoldRequest]) -> list[bool | None]:
    """`ledger.place_holds`'s result for each placed hold; None for one not placed (refused or not committed)."""
    ids = [r.request_id for r in requests]
    placed = {request_id for (request_id,) in Hold.select(Hold.request_id).where(Hold.request_id.in_(ids)).tuples()}
    return [True if r.request_id in placed else None for r in requests]


def finished(items: list[Finished]) -> list[bool | None]:
    """`group_settle.finish_many`'s result for each logged request: whether it closed the hold; None when
    the request has no request-log row."""
    ids = [item.record.request_id for item in items]
    # The group's statement stamps the holds it closes and the rows it logs with one time, so a hold
    # closed at its row's time was closed by it (not by the reaper before).
    rows = (RequestLog.select(RequestLog.request_id, RequestLog.created_at, Hold.closed_at)
            .join(Hold, on=(Hold.request_id == RequestLog.request_id), join_type=JOIN.LEFT_OUTER)
            .where(RequestLog.request_id.in_(ids)).tuples())
    logged = {request_id: logged_at == closed_at for request_id, logged_at, closed_at in rows}
    return [item.held and logged[item.record.request_id] if item.record.request_id in logged else None
            for item in items]
