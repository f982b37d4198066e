"""`onemap users ...`: API accounts: passwords for people, long-lived tokens for devices.

Passwords are stored as argon2id hashes, tokens only as SHA-256 hashes; both are printed once.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import typer

from core.settings import get_settings
from gis.accounts import (
    DEVICE_ROLE,
    ROLES,
    add_user,
    init_admin,
    issue_token,
    list_users,
    new_password,
    revoke_user,
    set_password,
)
from gis.db import get_engine

app = typer.Typer(no_args_is_help=True)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(text: str) -> float | None:
    """``90d``, ``8h``, ``30m``, ``3600`` (seconds), ``never`` → seconds (None: never expires)."""
    if text.strip().lower() in ("never", "0"):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdwy]?)\s*", text.lower())
    if not m:
        raise typer.BadParameter(f"{text!r}: a duration like 90d, 8h, 30m, 3600 or never")
    return float(m[1]) * _UNITS[m[2] or "s"]


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """The password from stdin (first line), or a generated one (and True: print it)."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise typer.BadParameter("no password on stdin", param_hint="--password-stdin")
        return line, False
    return new_password(), True


@app.command("add")
def add(
    name: str = typer.Argument(..., help="User name (A-Z a-z 0-9 _ . @ -)."),
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
    privileged: bool = typer.Option(
        False, "--privileged", help="May read person-level population (admin/operator only; audited)."
    ),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from stdin (else one is generated and printed once)."
    ),
    device: list[str] = typer.Option(
        [], "--device", help="Device id this device account may post fixes for (repeatable)."
    ),
    source: str | None = typer.Option(
        None, "--source", help="Device accounts: the source of the events they report (default grid_worker)."
    ),
    ttl: str | None = typer.Option(
        None, "--ttl", help="Device accounts: token lifetime (90d, 8h, never; default ONEMAP_DEVICE_TOKEN_TTL_S)."
    ),
) -> None:
    """Create an account. People get a password (they log in with it); devices get a token.
    The secret is printed once, on the last line."""
    engine = get_engine()
    if role == DEVICE_ROLE:
        if password_stdin:
            raise typer.BadParameter("device accounts use tokens, not passwords", param_hint="--password-stdin")
        token = add_user(engine, name, role, privileged, devices=device, source=source,
                         ttl_s=True if ttl is None else parse_duration(ttl))
        typer.echo(f"device account {name} created (devices: {', '.join(sorted(set(device))) or 'none'}); "
                   "token (shown only now):")
        typer.echo(token)
        return
    if ttl is not None:
        raise typer.BadParameter("people's tokens come from logging in (ONEMAP_TOKEN_TTL_S)", param_hint="--ttl")
    password, generated = _read_password(password_stdin)
    add_user(engine, name, role, privileged, password=password, devices=device, source=source, ttl_s=False)
    typer.echo(f"user {name} created (role {role}{', privileged' if privileged else ''}); "
               "log in with POST /auth/login or the viewer's sign-in form")
    if generated:
        typer.echo("password (shown only now):")
        typer.echo(password)


@app.command("token")
def token(
    name: str = typer.Argument(..., help="User name."),
    ttl: str | None = typer.Option(
        None, "--ttl", help="Lifetime: 90d, 8h, 30m, never (default: the role's ONEMAP_*TOKEN_TTL_S)."
    ),
    revoke_old: bool = typer.Option(False, "--revoke-old", help="Revoke the account's other tokens now."),
) -> None:
    """Issue a new token (rotation); old tokens keep working until they expire, or --revoke-old."""
    issued = issue_token(get_engine(), name, True if ttl is None else parse_duration(ttl), revoke_old=revoke_old)
    expiry = f"expires {issued.expires_at:%Y-%m-%d %H:%M:%S %Z}" if issued.expires_at else "never expires"
    typer.echo(f"new token for {name} ({expiry}{'; older tokens revoked' if revoke_old else ''}), shown only now:")
    typer.echo(issued.token)


@app.command("password")
def password(
    name: str = typer.Argument(..., help="User name."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the new password from stdin."),
) -> None:
    """Set a new password (generated and printed once unless --password-stdin); its tokens are revoked."""
    pw, generated = _read_password(password_stdin)
    revoked = set_password(get_engine(), name, pw)
    typer.echo(f"password of {name} changed; {revoked} token(s) revoked")
    if generated:
        typer.echo("password (shown only now):")
        typer.echo(pw)


@app.command("init-admin")
def init_admin_cmd(
    name: str = typer.Option("admin", "--name", help="Name of the first admin account."),
    password_file: Path | None = typer.Option(
        None, "--password-file", help="Where to write its password (default VAR/initial-admin.txt, mode 0600)."
    ),
) -> None:
    """Create a first admin account if there is no active admin (idempotent)."""
    path = password_file or get_settings().var_dir / "initial-admin.txt"
    if init_admin(get_engine(), path, name):
        typer.echo(f"first admin account {name!r} created; its password is in {path} (mode 0600)")
    elif path.exists():
        typer.echo(f"an admin account exists; the initial password (if not changed since) is in {path}")
    else:
        typer.echo("an admin account exists")


@app.command("list")
def list_cmd() -> None:
    """List users: newest token's prefix and expiry, last use, bound devices."""
    rows = list_users(get_engine())
    if not rows:
        typer.echo("no users")
        return
    typer.echo(f"{'name':<20} {'role':<9} {'priv':<4} {'pw':<3} {'token':<8} {'expires':<16} "
               f"{'last used':<16} {'devices':<16} status")
    for r in rows:
        expires = f"{r.expires_at:%Y-%m-%d %H:%M}" if r.expires_at else ("never" if r.token_prefix else "-")
        last = f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "-"
        status = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else f"active ({r.active_tokens} tokens)"
        typer.echo(
            f"{r.name:<20} {r.role:<9} {'yes' if r.privileged else 'no':<4} {'yes' if r.has_password else 'no':<3} "
            f"{(r.token_prefix + '…') if r.token_prefix else '-':<8} {expires:<16} {last:<16} "
            f"{','.join(r.devices) or '-':<16} {status}"
        )


@app.command("revoke")
def revoke(name: str = typer.Argument(..., help="User name.")) -> None:
    """Revoke an account: its tokens and password stop working (running servers within
    settings.api.auth_cache_s, open live streams too)."""
    revoke_user(get_engine(), name)
    typer.echo(f"user {name} revoked")
