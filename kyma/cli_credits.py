"""`flask --app app ledger …` and `credits …` commands (placeholder until the credits issue lands)."""

from flask import Flask


def register_credit_commands(app: Flask) -> None:
    """Attach ledger and credits commands."""
