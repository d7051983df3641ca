"""The schema command: creates, migrates, and is idempotent."""

from __future__ import annotations

from kyma.cli import create_or_migrate_schema
from kyma.db import database
from kyma.models import OBSOLETE_INDEXES


def test_schema_command_drops_indexes_the_request_path_no_longer_pays_for(app):
    with app.app_context():
        database.execute_sql('CREATE INDEX "requestlog_status" ON "requestlog" ("status")')
        assert "dropped index requestlog_status" in create_or_migrate_schema()
        names = {r[0] for r in database.execute_sql("select name from sqlite_master where type='index'")}
        assert not names & set(OBSOLETE_INDEXES)
        assert {"requestlog_request_id", "requestlog_account_id", "ledgerentry_idempotency_key"} <= names
        assert create_or_migrate_schema() == []


def test_open_holds_are_found_through_the_partial_index(app):
    # The reaper and a balance read only open holds; scanning every hold ever taken grows without end.
    with app.app_context():
        database.execute_sql('DROP INDEX "hold_open"')
        database.execute_sql('CREATE INDEX "hold_expires_at" ON "hold" ("expires_at")')  # an older database
        changes = create_or_migrate_schema()
        assert "dropped index hold_expires_at" in changes and "created index hold_open" in changes
        for sql in ('SELECT request_id, owner, expires_at FROM hold WHERE closed_at IS NULL',
                    'SELECT SUM(amount_micros) FROM hold WHERE account_id = 1 AND closed_at IS NULL'):
            plan = " ".join(row[3] for row in database.execute_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "hold_open" in plan, (sql, plan)


def test_a_new_sqlite_database_uses_2048_byte_pages_in_wal_mode(app):
    # Half the default page: each commit writes half the bytes to the log (docs/benchmarks.md).
    with app.app_context():
        assert database.execute_sql("PRAGMA page_size").fetchone()[0] == 2048
        assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_indexed_column_is_added_before_its_index(app):
    # An index created before its column: SQLite reads the unknown "request_id" as a string and
    # indexes a constant; the column's own index then clashes with it.
    with app.app_context():
        database.execute_sql('DROP TABLE "routeoutcome"')
        database.execute_sql('CREATE TABLE "routeoutcome" ("id" INTEGER NOT NULL PRIMARY KEY, "model" VARCHAR(100) '
                             'NOT NULL, "provider" VARCHAR(100) NOT NULL, "ok" INTEGER NOT NULL, "status" INTEGER, '
                             '"error" VARCHAR(200), "latency_ms" REAL NOT NULL, "created_at" DATETIME NOT NULL)')
        changes = create_or_migrate_schema()
        assert "added routeoutcome.request_id" in changes and "added routeoutcome.cost_micros" in changes
        sql = database.execute_sql("SELECT sql FROM sqlite_master WHERE name = 'routeoutcome_request_id'").fetchone()
        assert sql[0].endswith('("request_id")')
        plan = " ".join(r[3] for r in database.execute_sql(
            "EXPLAIN QUERY PLAN SELECT id FROM routeoutcome WHERE request_id = 'x'"))
        assert "routeoutcome_request_id" in plan
        assert create_or_migrate_schema() == []
