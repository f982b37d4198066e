"""API users, bearer tokens and the audit log (tables from migration ``0001_auth``).

Tokens are 256-bit random strings (``om_`` + URL-safe base64) shown once when created; the
database keeps only their SHA-256 (a slow KDF adds nothing for random tokens of this size).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import Connection, Engine, text

ROLES: Final[tuple[str, ...]] = ("admin", "operator", "planner", "viewer", "device")
#: Roles that may read operational layers and analytics.
READ_ROLES: Final[frozenset[str]] = frozenset({"admin", "operator", "planner", "viewer"})
#: Roles that run operations (dispatch, patrols, alarms).
OPS_ROLES: Final[frozenset[str]] = frozenset({"admin", "operator"})
TOKEN_PREFIX: Final[str] = "om_"


class UserError(ValueError):
    """Bad user name or role, duplicate user, unknown user."""


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


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_user(engine: Engine, name: str, role: str, privileged: bool = False) -> str:
    """Create a user and return its bearer token (the only time it is ever visible)."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if privileged and role not in OPS_ROLES:
        raise UserError(f"--privileged is only for roles admin/operator, not {role!r}")
    token = new_token()
    with engine.begin() as conn:
        exists = conn.execute(text("SELECT 1 FROM api_users WHERE name = :n"), {"n": name}).first()
        if exists:
            raise UserError(f"user {name!r} already exists (revoke it first or choose another name)")
        try:
            conn.execute(
                text(
                    "INSERT INTO api_users (name, role, privileged, token_hash, token_prefix) "
                    "VALUES (:n, :r, :p, :h, :pre)"
                ),
                {"n": name, "r": role, "p": privileged, "h": hash_token(token), "pre": token[:7]},
            )
        except Exception as exc:  # CHECK on the name pattern
            if "api_users_name_check" in str(exc):
                raise UserError(f"bad user name {name!r}: 1-64 of A-Z a-z 0-9 _ . @ -") from exc
            raise
        write_audit(conn, None, "user.add", name, {"role": role, "privileged": privileged})
    return token


def list_users(engine: Engine) -> list[UserRow]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT name, role, privileged, token_prefix, created_at, revoked_at, last_used_at "
                "FROM api_users ORDER BY name"
            )
        ).all()
    return [UserRow(*r) for r in rows]


def revoke_user(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        row = conn.execute(
            text("UPDATE api_users SET revoked_at = now() "
                 "WHERE name = :n AND revoked_at IS NULL RETURNING id"),
            {"n": name},
        ).first()
        if row is None:
            known = conn.execute(text("SELECT 1 FROM api_users WHERE name = :n"), {"n": name}).first()
            if known is None:
                raise UserError(f"no user named {name!r}")
            raise UserError(f"user {name!r} is already revoked")
        write_audit(conn, None, "user.revoke", name, {})


def write_audit(
    conn: Connection, user: User | None, action: str, target: str | None,
    details: dict[str, Any], client: str | None = None,
) -> None:
    conn.execute(
        text(
            "INSERT INTO audit_log (user_name, role, action, target, client, details) "
            "VALUES (:u, :r, :a, :t, :c, CAST(:d AS jsonb))"
        ),
        {
            "u": user.name if user else None, "r": user.role if user else None, "a": action,
            "t": target, "c": client, "d": orjson.dumps(details, default=str).decode(),
        },
    )


class TokenCache:
    """Token hash → user, remembered for ``ttl_s`` so most requests skip the lookup query."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, User | None]] = {}
        self._lock = threading.Lock()

    def get(self, token_hash: str) -> tuple[bool, User | None]:
        entry = self._entries.get(token_hash)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, token_hash: str, user: User | None) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[token_hash] = (time.monotonic() + self.ttl_s, user)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def lookup_token(engine: Engine, token: str) -> User | None:
    """The active user holding ``token``, or None (unknown or revoked).

    A plain indexed read; ``last_used_at`` is refreshed at most once a minute per user so
    authenticated reads do not each cost a committed write.
    """
    h = hash_token(token)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT name, role, privileged, "
                "(last_used_at IS NULL OR last_used_at < now() - interval '1 minute') AS stale "
                "FROM api_users WHERE token_hash = :h AND revoked_at IS NULL"
            ),
            {"h": h},
        ).first()
        if row is None:
            return None
        if row[3]:
            conn.execute(text("UPDATE api_users SET last_used_at = now() WHERE token_hash = :h"), {"h": h})
            conn.commit()
    return User(row[0], row[1], bool(row[2]))
