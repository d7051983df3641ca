"""New request ids: 32 hex characters that sort by the time they were made.

A request id keys rows in six indexes (the hold, its three ledger entries, the request log, the
route outcomes). Random ids land each new row on a random leaf page of every one of them, so each
request dirtied pages of its own that the database writes to its log, checkpoints, and reads back
once they leave the cache; ids that grow with time all land on the last leaf, which the requests
committing together share. The first 12 characters are the milliseconds since the epoch and the
other 20 are random (80 bits), so ids stay unique across workers and instances and unguessable.
"""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """A fresh id: the time in milliseconds, then 80 random bits, as 32 lower-case hex characters."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"
