"""`flask --app app db check` and `flask --app app db backup PATH`: the database's health and its copies."""

from __future__ import annotations

import os

import click
from flask import Flask

from kyma.db import database, is_sqlite_db
from kyma.services import ledger

PG_BACKUP_HINT = ("PostgreSQL is backed up with its own tools while the gateway runs: "
                  "pg_dump --format=custom --file=kyma.dump \"$KYMA_DATABASE_URL\" "
                  "(restore with pg_restore --clean --dbname=...), or continuous archiving.")


def register_db_commands(app: Flask) -> None:
    """Attach the db command group."""

    @app.cli.group("db")
    def db_group():
        """Check the database and back it up."""

    @db_group.command("check")
    def check_command():
        """Exit 1 listing every problem: SQLite's integrity and foreign-key checks, then the ledger check."""
        problems = []
        db = database.obj
        if is_sqlite_db(db):
            from kyma import sqlite

            found = sqlite.integrity_problems(db.database)
            problems += [f"integrity: {p}" for p in found]
            click.echo("integrity failed" if found else "integrity ok")
        else:
            click.echo("integrity: checked by PostgreSQL itself (data checksums, amcheck)")
        if not any(p.startswith("integrity:") for p in problems):  # a damaged file cannot be read reliably
            mismatches = ledger.check_ledger()
            problems += [f"ledger: {m}" for m in mismatches]
            click.echo("ledger failed" if mismatches else "ledger ok")
        for problem in problems:
            click.echo(problem, err=True)
        if problems:
            raise SystemExit(1)

    @db_group.command("backup")
    @click.argument("path", type=click.Path(dir_okay=False))
    def backup_command(path):
        """Copy the SQLite database, while the gateway runs, into PATH (a new file), checked."""
        db = database.obj
        if not is_sqlite_db(db):
            raise click.ClickException(PG_BACKUP_HINT)
        if os.path.exists(path):
            raise click.ClickException(f"{path} exists; choose a new file (a backup never overwrites one)")
        import apsw

        from kyma import sqlite

        try:
            pages = sqlite.backup(db.database, path)
        except FileExistsError:
            raise click.ClickException(f"{path} appeared meanwhile; a backup never overwrites a file") from None
        except FileNotFoundError:
            raise click.ClickException(f"the directory of {path} does not exist; create it first") from None
        except apsw.CantOpenError:
            raise click.ClickException(f"there is no database at {db.database} to back up") from None
        except apsw.Error as exc:
            raise click.ClickException(f"the backup failed, nothing was written: {exc}") from None
        click.echo(f"backed up {pages} pages to {path} (integrity ok)")
