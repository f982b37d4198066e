"""Generated passwords of the embedded cluster's roles, in one 0600 file (``var/pg/secrets.json``).

    {"postgres": "...", "onemap_owner": "...", "onemap_api": "..."}

``postgres`` is the cluster's superuser, used only by onemap itself to administer the cluster
(create the database, roles, the PostGIS extension); ``onemap_owner`` owns the schema (migrations,
loaders, ``onemap users``, ``onemap db psql``); ``onemap_api`` is what ``onemap serve`` connects as.
The file belongs to the OS user onemap runs as and nobody else may read it; PostgreSQL asks for
these passwords on every connection (SCRAM-SHA-256, no ``trust`` line in ``pg_hba.conf``).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from core.errors import ConfigError

SUPERUSER = "postgres"
OWNER = "onemap_owner"
API = "onemap_api"
ROLES = (SUPERUSER, OWNER, API)


def new_password() -> str:
    """43 URL-safe characters (256 bits): no quoting needed in a URL, a SQL literal or a pgpass line."""
    return secrets.token_urlsafe(32)


def read_secrets(path: Path) -> dict[str, str]:
    """The passwords in ``path``; ConfigError when it is missing, unreadable or readable by others."""
    try:
        st = path.stat()
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"database secrets file {path} does not exist",
                          hint="run `onemap db up` (it creates the cluster and its passwords)") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read database secrets file {path}: {exc}",
                          hint="run onemap as the OS user that ran `onemap db up`") from exc
    if st.st_mode & 0o077:
        raise ConfigError(f"database secrets file {path} is readable by other OS users "
                          f"(mode {st.st_mode & 0o777:o})", hint=f"chmod 600 {path}")
    missing = [r for r in ROLES if not isinstance(data.get(r), str) or not data[r]]
    if missing:
        raise ConfigError(f"database secrets file {path} has no password for {', '.join(missing)}",
                          hint="run `onemap db up` to complete it")
    return {r: data[r] for r in ROLES}


def ensure_secrets(path: Path) -> dict[str, str]:
    """The passwords in ``path``, generating (and writing, 0600) any that are missing."""
    data: dict[str, str] = {}
    if path.exists():
        try:
            data = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if isinstance(v, str)}
        except ValueError as exc:
            raise ConfigError(f"database secrets file {path} is not valid JSON: {exc}",
                              hint="restore it from a backup, or `onemap db destroy --yes` to start over") from exc
    if all(data.get(r) for r in ROLES) and not path.stat().st_mode & 0o077:
        return {r: data[r] for r in ROLES}
    for role in ROLES:
        data.setdefault(role, new_password())
    write_secrets(path, data)
    return {r: data[r] for r in ROLES}


def write_secrets(path: Path, data: dict[str, str]) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
