"""`onemap users ...`: API users and their bearer tokens (stored only as SHA-256 hashes)."""

from __future__ import annotations

import typer

from gis.accounts import ROLES, add_user, list_users, revoke_user
from gis.db import get_engine

app = typer.Typer(no_args_is_help=True)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="User name (A-Z a-z 0-9 _ . @ -)."),
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
    privileged: bool = typer.Option(
        False, "--privileged", help="May read person-level population (admin/operator only; audited)."
    ),
) -> None:
    """Create a user; its bearer token is printed once, on the last line."""
    token = add_user(get_engine(), name, role, privileged)
    typer.echo(f"user {name} created (role {role}{', privileged' if privileged else ''}); "
               "token (shown only now):")
    typer.echo(token)


@app.command("list")
def list_cmd() -> None:
    """List users (token prefixes only; tokens themselves are never stored)."""
    rows = list_users(get_engine())
    if not rows:
        typer.echo("no users")
        return
    typer.echo(f"{'name':<24} {'role':<9} {'priv':<5} {'token':<8} {'created':<20} {'last used':<20} status")
    for r in rows:
        typer.echo(
            f"{r.name:<24} {r.role:<9} {'yes' if r.privileged else 'no':<5} {r.token_prefix + '…':<8} "
            f"{r.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{(f'{r.last_used_at:%Y-%m-%d %H:%M:%S}' if r.last_used_at else '-'):<20} "
            f"{'revoked ' + f'{r.revoked_at:%Y-%m-%d %H:%M}' if r.revoked_at else 'active'}"
        )


@app.command("revoke")
def revoke(name: str = typer.Argument(..., help="User name.")) -> None:
    """Revoke a user's token (running servers stop accepting it within settings.api.auth_cache_s)."""
    revoke_user(get_engine(), name)
    typer.echo(f"user {name} revoked")
