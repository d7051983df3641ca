"""`flask --app app ledger check|reap` and `flask --app app credits add EMAIL USD [--grant]`."""

from __future__ import annotations

import click
from flask import Flask

from kyma.errors import KymaError
from kyma.services import ledger


def register_credit_commands(app: Flask) -> None:
    """Attach the ledger and credits command groups."""

    @app.cli.group("ledger")
    def ledger_group():
        """Check and repair the credit ledger."""

    @ledger_group.command("check")
    def check_command():
        """Exit 1 listing every account whose balance, entries or holds disagree; else print "ledger ok"."""
        problems = ledger.check_ledger()
        for problem in problems:
            click.echo(str(problem), err=True)
        if problems:
            raise SystemExit(1)
        click.echo("ledger ok")

    @ledger_group.command("reap")
    def reap_command():
        """Release holds that expired or whose worker process is gone."""
        click.echo(f"released {ledger.reap_expired_holds()} abandoned holds")

    @app.cli.group("credits")
    def credits_group():
        """Add credit to accounts."""

    @credits_group.command("add")
    @click.argument("account")
    @click.argument("usd")
    @click.option("--grant", is_flag=True, help="A grant (does not count towards the tier); default is a purchase.")
    @click.option("--idempotency-key", default=None, help="Run twice with the same key: credited once.")
    @click.option("--note", default="", help="A note kept on the ledger entry.")
    def add_command(account, usd, grant, idempotency_key, note):
        """Add USD of credit to ACCOUNT (email or id) as a purchase, or a grant with --grant."""
        try:
            result = ledger.add_credit(account, usd, kind="grant" if grant else "purchase",
                                       idempotency_key=idempotency_key, note=note)
        except KymaError as exc:
            raise click.ClickException(exc.message) from exc
        except ArithmeticError as exc:
            raise click.ClickException(f"not an amount: {usd!r}") from exc
        verb = "already added (idempotency key replayed)" if result.replayed else "added"
        click.echo(f"{verb} {result.amount_micros / 1_000_000:.6f} USD to account {result.account_id}; "
                   f"balance {result.balance_micros / 1_000_000:.6f} USD, tier {result.tier}")
