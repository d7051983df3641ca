"""The console's ?page= argument."""

from __future__ import annotations

from flask import abort, request

MAX_PAGE = 10_000  # far beyond any real list; keeps the SQL offset small


def page_number() -> int:
    """?page=, from 1 to MAX_PAGE (a 400 otherwise)."""
    number = request.args.get("page", 1, type=int)
    if number < 1 or number > MAX_PAGE:
        abort(400, description=f"The page number must be between 1 and {MAX_PAGE}.")
    return number
