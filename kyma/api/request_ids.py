"""The id of an API request: the client's X-Request-Id when it is well-formed, made unique, or a new one.

Request ids are unique in the request log and key a request's credit hold and ledger entries, so a
client's id is never taken as it is: two requests sent with the same id would collide there. It is
kept as the beginning of the gateway's id instead, followed by a random tail; the id is answered in
X-Request-Id, so the client (or its proxy) finds its own id at the start of it, and the request log's
search by id prefix finds every request it sent under that id. No database read is needed to decide.
"""

from __future__ import annotations

import re
import secrets

from kyma.ids import new_id

# Letters, digits and . _ : - only (nothing a log line or a URL must escape); room left for the tail.
WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,47}")


def request_id(incoming: str | None) -> str:
    """The gateway's id for a request that arrived with X-Request-Id `incoming` (None: without one)."""
    if incoming and WELL_FORMED.fullmatch(incoming):
        return f"{incoming}.{secrets.token_hex(8)}"  # 47 + 17 = 64, RequestLog.request_id's width
    return new_id()
