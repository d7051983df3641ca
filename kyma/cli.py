"""`flask --app app …` commands: schema, ledger, credits and database administration."""

from __future__ import annotations

import click
from flask import Flask
from playhouse.migrate import SchemaMigrator, migrate

from kyma.db import database
from kyma.models import ALL_MODELS, OBSOLETE_INDEXES


def create_or_migrate_schema() -> list[str]:
    """Create missing tables, columns and indexes, drop obsolete indexes; safe to run any number of times."""
    changes: list[str] = []
    db = database.obj
    with db.connection_context():
        existing = set(db.get_tables())
        had = _indexes(db)
        migrator = SchemaMigrator.from_database(db)
        # New tables first (a new column may reference one), then new columns, then the indexes
        # missing on old tables: an index on a column not added yet would be refused (or, on
        # SQLite, which reads an unknown double-quoted name as a string, built on a constant).
        new_tables = [m for m in ALL_MODELS if m._meta.table_name not in existing]
        db.create_tables(new_tables, safe=True)
        changes += [f"created table {m._meta.table_name}" for m in new_tables]
        for model in ALL_MODELS:
            table = model._meta.table_name
            if table not in existing:
                continue
            have = {c.name for c in db.get_columns(table)}
            missing = [f for f in model._meta.sorted_fields if f.column_name not in have]
            for f in missing:
                f.null = True  # new columns on old rows must be nullable or defaulted
                migrate(migrator.add_column(table, f.column_name, f))
                changes.append(f"added {table}.{f.column_name}")
        db.create_tables(ALL_MODELS, safe=True)  # the indexes missing on old tables
        present = _indexes(db)
        # A new table's own indexes go without saying; one added to an existing table is news.
        changes += [f"created index {name}" for table, name in sorted(present - had) if table in existing]
        names = {name for _, name in present}
        for name in OBSOLETE_INDEXES:
            if name in names:
                db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
                changes.append(f"dropped index {name}")
    return changes


def _indexes(db) -> set[tuple[str, str]]:
    """(table, index name) of every index on the gateway's tables."""
    return {(ix.table, ix.name) for model in ALL_MODELS for ix in db.get_indexes(model._meta.table_name)}


def apply_configured_admins(app: Flask) -> list[str]:
    """Make KYMA_ADMIN_EMAILS' accounts admins (idempotent); the emails changed now."""
    from kyma.services.admins import apply_admin_emails

    emails = app.extensions["kyma"].settings.admin_emails
    if not emails:
        return []
    with database.obj.connection_context():
        return apply_admin_emails(emails)


def register_cli(app: Flask) -> None:
    """Attach the gateway's commands to `flask --app app`."""

    @app.cli.command("init-db")
    def init_db_command():
        """Create or migrate the database schema (idempotent)."""
        changes = create_or_migrate_schema()
        changes += [f"made {email} an admin (KYMA_ADMIN_EMAILS)" for email in apply_configured_admins(app)]
        click.echo("\n".join(changes) if changes else "schema is up to date")

    from kyma.cli_admin import register_admin_commands
    from kyma.cli_credits import register_credit_commands
    from kyma.cli_db import register_db_commands

    register_admin_commands(app)
    register_credit_commands(app)
    register_db_commands(app)
