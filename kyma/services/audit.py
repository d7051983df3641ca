"""The admin audit log: every operator action appended with who, what, on what, before and after."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from kyma.models import AuditEntry, utcnow
from kyma.services.paging import Page, page_of

PAGE_SIZE = 25


@dataclass(frozen=True)
class AuditFilter:
    """Which audit entries a page shows: one action's, or every one ("")."""

    action: str = ""
    page: int = 1


def _dump(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def record(actor: str, action: str, target: str, before=None, after=None, *, now: datetime | None = None) -> int:
    """Append one entry (call inside the action's transaction, so both happen or neither); returns its id."""
    row = AuditEntry.create(actor=actor[:254], action=action[:40], target=str(target)[:254], before=_dump(before),
                            after=_dump(after), created_at=now or utcnow())
    return row.id


def page(number: int = 1, size: int = PAGE_SIZE, *, action: str = "") -> Page:
    """Entries newest first, `size` a page; only one action's when `action` is given."""
    query = AuditEntry.select()
    if action:
        query = query.where(AuditEntry.action == action)
    return page_of(query.order_by(AuditEntry.id.desc()), AuditFilter(action, number), size)


def loads(text: str | None):
    """A stored before/after value back from JSON."""
    return None if text is None else json.loads(text)


def changes(entry: AuditEntry) -> list[tuple[str, object, object]]:
    """(field, before, after) for each field the entry records, changed ones first."""
    before, after = loads(entry.before) or {}, loads(entry.after) or {}
    if not isinstance(before, dict) or not isinstance(after, dict):
        return [("value", before, after)]
    fields = sorted(set(before) | set(after), key=lambda f: (before.get(f) == after.get(f), f))
    return [(f, before.get(f), after.get(f)) for f in fields]
