"""API user accounts, bearer tokens and the audit log in PostGIS (tables from migration ``0001_auth``).

Tokens are 256-bit random strings (``om_`` + URL-safe base64) shown once when created; the
database keeps only their SHA-256 (a slow KDF adds nothing for random tokens of this size).
Used by the API (token lookup, audit) and by ``onemap users`` (administration). SQL lives in
``gis/sql/accounts/``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import orjson
from sqlalchemy import Connection, Engine, TextClause, text

from core.errors import ConflictError, InputError, NotFoundError
from gis.dberrors import db_errors
from gis.policy import ROLES, Permission, roles_for

SQL_DIR = Path(__file__).resolve().parent / "sql" / "accounts"

#: Roles that may be made privileged (read person-level population; audited).
PRIVILEGED_ROLES: Final[frozenset[str]] = roles_for(Permission.PRIVILEGED)
#: user names (the CHECK on ``api_users.name``)
NAME_PATTERN: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
TOKEN_PREFIX: Final[str] = "om_"


class UserError(InputError):
    """Bad user name or role (and the base of every user-administration error)."""


class UserExistsError(UserError, ConflictError):
    """A user of that name already exists."""


class UnknownUserError(UserError, NotFoundError):
    """No user of that name."""


class UserRevokedError(UserError, ConflictError):
    """The user is already revoked."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    privileged: bool = False


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    privileged: bool
    token_prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@lru_cache(maxsize=16)
def _sql(name: str) -> TextClause:
    return text((SQL_DIR / f"{name}.sql").read_text(encoding="utf-8"))


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_user(engine: Engine, name: str, role: str, privileged: bool = False) -> str:
    """Create a user and return its bearer token (the only time it is ever visible)."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if privileged and role not in PRIVILEGED_ROLES:
        raise UserError(f"--privileged is only for roles admin/operator, not {role!r}")
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(f"bad user name {name!r}: 1-64 of A-Z a-z 0-9 _ . @ -")
    token = new_token()
    with engine.begin() as conn:
        if conn.execute(_sql("user_exists"), {"n": name}).first():
            raise UserExistsError(f"user {name!r} already exists (revoke it first or choose another name)")
        with db_errors():  # the table's CHECKs and UNIQUE stay the backstop (InputError/ConflictError)
            conn.execute(
                _sql("user_insert"),
                {"n": name, "r": role, "p": privileged, "h": hash_token(token), "pre": token[:7]},
            )
        write_audit(conn, None, "user.add", name, {"role": role, "privileged": privileged})
    return token


def list_users(engine: Engine) -> list[UserRow]:
    with engine.connect() as conn:
        rows = conn.execute(_sql("users_list")).all()
    return [UserRow(*r) for r in rows]


def revoke_user(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        if conn.execute(_sql("user_revoke"), {"n": name}).first() is None:
            if conn.execute(_sql("user_exists"), {"n": name}).first() is None:
                raise UnknownUserError(f"no user named {name!r}")
            raise UserRevokedError(f"user {name!r} is already revoked")
        write_audit(conn, None, "user.revoke", name, {})


def write_audit(
    conn: Connection, user: User | None, action: str, target: str | None,
    details: dict[str, Any], client: str | None = None,
) -> None:
    conn.execute(
        _sql("audit_insert"),
        {
            "u": user.name if user else None, "r": user.role if user else None, "a": action,
            "t": target, "c": client, "d": orjson.dumps(details, default=str).decode(),
        },
    )


def lookup_token(engine: Engine, token: str) -> User | None:
    """The active user holding ``token``, or None (unknown or revoked).

    A plain indexed read; ``last_used_at`` is refreshed at most once a minute per user so
    authenticated reads do not each cost a committed write.
    """
    h = hash_token(token)
    with engine.connect() as conn:
        row = conn.execute(_sql("token_lookup"), {"h": h}).first()
        if row is None:
            return None
        if row[3]:
            conn.execute(_sql("token_touch"), {"h": h})
            conn.commit()
    return User(row[0], row[1], bool(row[2]))
