"""`flask --app app admin grant|revoke EMAIL`: who may use the admin console."""

from __future__ import annotations

import click
from flask import Flask

from kyma.errors import KymaError
from kyma.services import admins


def register_admin_commands(app: Flask) -> None:
    """Attach the admin command group."""

    @app.cli.group("admin")
    def admin_group():
        """Grant or revoke the admin console."""

    @admin_group.command("grant")
    @click.argument("email")
    def grant_command(email):
        """Make EMAIL's account an admin."""
        _set(email, True)

    @admin_group.command("revoke")
    @click.argument("email")
    def revoke_command(email):
        """Take the admin console away from EMAIL's account."""
        _set(email, False)


def _set(email: str, admin: bool) -> None:
    try:
        changed = admins.set_admin(email, admin, actor="cli")
    except KymaError as exc:
        raise click.ClickException(exc.message) from exc
    state = "an admin" if admin else "not an admin"
    click.echo(f"{email} is {'now' if changed else 'already'} {state}")
