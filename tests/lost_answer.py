"""Faults of a PostgreSQL connection that fails mid-write, so that the write's outcome is unknown."""

from __future__ import annotations

import sqlite3

import peewee
import psycopg

from kyma.db import database

# What psycopg says when the server's answer never came.
LOST = "consuming input failed: server closed the connection unexpectedly"


def lost() -> peewee.OperationalError:
    """The error a statement gets, through peewee, when the connection failed before its answer came."""
    return peewee.OperationalError(psycopg.OperationalError(LOST))


def fail_first_commit(monkeypatch, when: str) -> list[str]:
    """The next COMMIT fails: `after` the server committed (its answer lost), `before` it was sent,
    `killed`: the server ends the session right after committing, or `disk`: SQLite's disk error.
    Later COMMITs run as usual. The list returned holds `when` once the fault has fired."""
    db = database.obj
    real = db.commit
    fired = []

    def commit():
        if fired:
            return real()
        fired.append(when)
        if when == "before":
            raise lost()
        if when == "disk":
            raise peewee.OperationalError(sqlite3.OperationalError("disk I/O error"))
        real()
        if when == "killed":
            db.execute_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        raise lost()

    monkeypatch.setattr(db, "commit", commit)
    return fired
