"""Which units' writes are in the database, after a COMMIT whose outcome the gateway never learned.

When the connection fails while a COMMIT is under way (a batch's, or a group transaction's), it may
have landed or not. Running its units again could then hold, charge or log a request twice; not
running them could lose it. Each unit leaves a row keyed by its request id (its hold, its request-log
row), so the database says which landed. For each item these give a value (a batch writer's result,
where it has one) when the item's writes are there, and None when they are not (running it again is
then safe). Should a late COMMIT still land after the look, the request id's unique index refuses the
second write rather than doubling it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from peewee import JOIN

from kyma.models import Hold, RequestLog

if TYPE_CHECKING:  # only the models at run time: recording, which group_settle builds on, imports this
    from kyma.services.group_settle import Finished
    from kyma.services.ledger import HoldRequest


def _with_row(model, request_ids: list[str]) -> list[bool | None]:
    """True for each request that has a row of `model` (keyed by its request id); None for one without."""
    found = {rid for (rid,) in model.select(model.request_id).where(model.request_id.in_(request_ids)).tuples()}
    return [True if rid in found else None for rid in request_ids]


def held(request_ids: list[str]) -> list[bool | None]:
    """True for each request that has a hold (open or closed); None for one without."""
    return _with_row(Hold, request_ids)


def holds_placed(requests: list[HoldRequest]) -> list[bool | None]:
    """`ledger.place_holds`'s result for each placed hold; None for one not placed (refused or not committed)."""
    return held([r.request_id for r in requests])


def logged(request_ids: list[str]) -> list[bool | None]:
    """True for each request that has its request-log row; None for one without."""
    return _with_row(RequestLog, request_ids)


def marked(items: list[tuple[str, int, str | None, str | None]]) -> list[bool | None]:
    """For each (request id, status, error, error code): True when its request-log row says so; None when not."""
    rows = {row[0]: row[1:] for row in
            RequestLog.select(RequestLog.request_id, RequestLog.status, RequestLog.error, RequestLog.error_code)
            .where(RequestLog.request_id.in_([item[0] for item in items])).tuples()}
    return [True if rows.get(item[0]) == tuple(item[1:]) else None for item in items]


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
