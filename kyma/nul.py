"""NUL (U+0000) in client text: PostgreSQL refuses it in any text value, where SQLite keeps it."""

from __future__ import annotations

NUL = "\x00"
REPLACEMENT = "\ufffd"  # what a character that cannot be kept becomes, by Unicode's convention


def kept(text: str | None) -> str | None:
    """`text` as a text column can hold it on every backend: each NUL replaced, anything else as it is."""
    return text.replace(NUL, REPLACEMENT) if text and NUL in text else text
