"""API user accounts, their tokens, device bindings and the audit log in PostGIS.

Tables: ``api_users`` (name, role, privileged, argon2id password hash, event source),
``api_tokens`` (many per user: SHA-256 of the token, kind, expiry, revocation, last use),
``api_user_devices`` (the device ids a device account may post fixes for) and the append-only
``audit_log`` (migrations ``0001_auth`` and ``0004_accounts``). Tokens are 256-bit random strings
(``om_`` + URL-safe base64) shown once when created; the database keeps only their SHA-256 (a
slow KDF adds nothing for random tokens of this size). Passwords people type are argon2id hashes.
Logins and their brute-force limit: :mod:`gis.logins`. SQL lives in ``gis/sql/accounts/``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, TextClause, text

from core.errors import ConflictError, InputError, NotFoundError
from gis.dberrors import db_errors
from gis.policy import ROLES, Permission, roles_for

SQL_DIR = Path(__file__).resolve().parent / "sql" / "accounts"

#: Roles that may be made privileged (read person-level population; audited).
PRIVILEGED_ROLES: Final[frozenset[str]] = roles_for(Permission.PRIVILEGED)
#: user names (the CHECK on ``api_users.name``)
NAME_PATTERN: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
#: device ids a device account may be bound to (the CHECK on ``api_user_devices.device_id``)
DEVICE_PATTERN: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9_.-]{1,40}")
#: the ``source`` of events a device account reports (``events.source``)
EVENT_SOURCES: Final[tuple[str, ...]] = ("grid_worker", "resident", "camera")
TOKEN_PREFIX: Final[str] = "om_"
#: the role whose accounts are machines: long-lived tokens, bound device ids, no password
DEVICE_ROLE: Final[str] = "device"
MIN_PASSWORD_LEN: Final[int] = 10

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults


class UserError(InputError):
    """Bad user name, role, password or device (and the base of every user-administration error)."""


class UserExistsError(UserError, ConflictError):
    """A user of that name already exists."""


class UnknownUserError(UserError, NotFoundError):
    """No user of that name."""


class UserRevokedError(UserError, ConflictError):
    """The user is revoked."""


@dataclass(frozen=True)
class User:
    """An authenticated account as the API sees it."""

    name: str
    role: str
    privileged: bool = False
    #: device ids this account may post fixes for (device accounts)
    devices: frozenset[str] = field(default_factory=frozenset)
    #: the ``source`` of events it reports (device accounts; None: grid_worker)
    source: str | None = None
    #: when the presented token stops working (None: never)
    expires_at: datetime | None = None


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    privileged: bool
    has_password: bool
    token_prefix: str | None  # of the newest active token
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None  # of the newest active token
    last_used_at: datetime | None  # of any token
    active_tokens: int
    devices: tuple[str, ...]


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime | None
    id: int | None = None  # api_tokens.id


@lru_cache(maxsize=32)
def _sql(name: str) -> TextClause:
    return text((SQL_DIR / f"{name}.sql").read_text(encoding="utf-8"))


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_password() -> str:
    """A generated password (about 120 bits), printed once to whoever creates the account."""
    return secrets.token_urlsafe(15)


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LEN:
        raise UserError(f"password too short: at least {MIN_PASSWORD_LEN} characters")
    if "\x00" in password:
        raise UserError("password contains a NUL character")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; without a hash one is still computed (same time either way)."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash of a random password, made on first use (an argon2id hash costs ~0.1 s: not at import,
    which every ``onemap`` command pays)."""
    return _hasher.hash(secrets.token_urlsafe(16))


def default_ttl_s(role: str) -> float | None:
    """Token lifetime for ``role`` from the settings (people: hours; devices: long-lived; 0: never)."""
    from core.settings import get_settings

    api = get_settings().api
    ttl = api.device_token_ttl_s if role == DEVICE_ROLE else api.token_ttl_s
    return ttl or None


def _check_devices(role: str, devices: Iterable[str]) -> list[str]:
    devices = sorted(set(devices))
    if devices and role != DEVICE_ROLE:
        raise UserError(f"--device is only for role {DEVICE_ROLE!r}, not {role!r}")
    for d in devices:
        if not DEVICE_PATTERN.fullmatch(d):
            raise UserError(f"bad device id {d!r}: 1-40 of A-Z a-z 0-9 _ . -")
    return devices


def _user_row(conn: Connection, name: str) -> Any:
    row = conn.execute(_sql("user_by_name"), {"n": name}).first()
    if row is None:
        raise UnknownUserError(f"no user named {name!r}")
    if row.revoked:
        raise UserRevokedError(f"user {name!r} is revoked")
    return row


def _insert_token(conn: Connection, user_id: int, kind: str, ttl_s: float | None) -> IssuedToken:
    token = new_token()
    row = conn.execute(_sql("token_insert"), {
        "uid": user_id, "h": hash_token(token), "pre": token[:7], "kind": kind, "ttl": ttl_s,
    }).one()
    return IssuedToken(token, row.expires_at, row.id)


def add_user(
    engine: Engine, name: str, role: str, privileged: bool = False, *,
    password: str | None = None, devices: Sequence[str] = (), source: str | None = None,
    ttl_s: float | None | bool = True, actor: User | None = None,
) -> str | None:
    """Create a user; returns its first bearer token (the only time it is ever visible).

    ``password``: its argon2id hash is stored (people log in with ``POST /auth/login``).
    ``devices``/``source``: a device account's bound device ids and the source of its events.
    ``ttl_s``: lifetime of the first token (True: the role's default from the settings; None:
    never expires; False: no token, e.g. people who only log in).
    """
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if privileged and role not in PRIVILEGED_ROLES:
        raise UserError(f"--privileged is only for roles admin/operator, not {role!r}")
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(f"bad user name {name!r}: 1-64 of A-Z a-z 0-9 _ . @ -")
    if source is not None and (role != DEVICE_ROLE or source not in EVENT_SOURCES):
        raise UserError(f"--source is only for role {DEVICE_ROLE!r}, one of {', '.join(EVENT_SOURCES)}")
    if password is not None and role == DEVICE_ROLE:
        raise UserError("device accounts use tokens (onemap users token), not passwords")
    bound = _check_devices(role, devices)
    pw_hash = hash_password(password) if password is not None else None
    with engine.begin() as conn:
        if conn.execute(_sql("user_exists"), {"n": name}).first():
            raise UserExistsError(f"user {name!r} already exists (revoke it first or choose another name)")
        with db_errors():  # the table's CHECKs and UNIQUE stay the backstop (InputError/ConflictError)
            uid = conn.execute(_sql("user_insert"), {
                "n": name, "r": role, "p": privileged, "pw": pw_hash, "src": source,
            }).scalar_one()
        if bound:
            conn.execute(_sql("device_insert"), {"uid": uid, "devices": bound})
        issued = None
        if ttl_s is not False:
            ttl = default_ttl_s(role) if ttl_s is True else ttl_s
            issued = _insert_token(conn, uid, DEVICE_ROLE if role == DEVICE_ROLE else "initial", ttl)
        write_audit(conn, actor, "user.add", name, {
            "role": role, "privileged": privileged, "password": pw_hash is not None, "source": source,
            "token_expires_at": issued.expires_at if issued else None,
        }, ids=[name, *bound])
    return issued.token if issued else None


def issue_token(
    engine: Engine, name: str, ttl_s: float | None | bool = True, *, revoke_old: bool = False,
    actor: User | None = None,
) -> IssuedToken:
    """A new token for ``name`` (rotation: old ones keep working until they expire or, with
    ``revoke_old``, are revoked now)."""
    with engine.begin() as conn:
        row = _user_row(conn, name)
        ttl = default_ttl_s(row.role) if ttl_s is True else (None if ttl_s is False else ttl_s)
        issued = _insert_token(conn, row.id, DEVICE_ROLE if row.role == DEVICE_ROLE else "initial", ttl)
        revoked = 0
        if revoke_old:
            revoked = conn.execute(_sql("tokens_revoke_user"), {"uid": row.id, "keep_id": issued.id}).scalar_one()
        write_audit(conn, actor, "user.token", name,
                    {"expires_at": issued.expires_at, "revoked_old": revoked}, ids=[name])
    return issued


def set_password(engine: Engine, name: str, password: str, *, actor: User | None = None) -> int:
    """Set ``name``'s password and revoke its tokens (sessions end); returns how many were revoked."""
    pw_hash = hash_password(password)
    with engine.begin() as conn:
        row = _user_row(conn, name)
        if row.role == DEVICE_ROLE:
            raise UserError("device accounts use tokens (onemap users token), not passwords")
        conn.execute(_sql("user_password"), {"uid": row.id, "pw": pw_hash})
        revoked = conn.execute(_sql("tokens_revoke_user"), {"uid": row.id, "keep_id": None}).scalar_one()
        write_audit(conn, actor, "user.password", name, {"revoked_tokens": revoked}, ids=[name])
    return int(revoked)


def list_users(engine: Engine) -> list[UserRow]:
    with engine.connect() as conn:
        rows = conn.execute(_sql("users_list")).all()
    return [UserRow(*r[:-1], tuple(r[-1])) for r in rows]


def revoke_user(engine: Engine, name: str, *, actor: User | None = None) -> None:
    """Revoke a user: none of its tokens works any more, nor its password."""
    with engine.begin() as conn:
        if conn.execute(_sql("user_revoke"), {"n": name}).first() is None:
            if conn.execute(_sql("user_exists"), {"n": name}).first() is None:
                raise UnknownUserError(f"no user named {name!r}")
            raise UserRevokedError(f"user {name!r} is already revoked")
        write_audit(conn, actor, "user.revoke", name, {}, ids=[name])


def revoke_token(engine: Engine, token: str, client: str | None = None) -> str | None:
    """Revoke one token (logout); the name of its user, or None when unknown or already revoked."""
    with engine.begin() as conn:
        name = conn.execute(_sql("token_revoke"), {"h": hash_token(token)}).scalar_one_or_none()
        if name is not None:
            write_audit(conn, None, "auth.logout", name, {"token_prefix": token[:7]}, client, ids=[name])
    return name


def has_active_admin(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(_sql("active_admin")).first() is not None


def write_audit(
    conn: Connection, user: User | None, action: str, target: str | None,
    details: dict[str, Any], client: str | None = None, ids: Iterable[str] = (),
) -> None:
    """One append-only audit row: who (``user``; None: the command line or the anonymous caller),
    what (``action``), which ids, when (the database's clock)."""
    conn.execute(
        _sql("audit_insert"),
        {
            "u": user.name if user else None, "r": user.role if user else None, "a": action,
            "t": target, "c": client, "d": orjson.dumps(details, default=str).decode(),
            "ids": [str(i) for i in ids],
        },
    )


def lookup_token(engine: Engine, token: str) -> User | None:
    """The active user holding ``token``, or None (unknown, revoked or expired).

    A plain indexed read; ``last_used_at`` is refreshed at most once a minute per token so
    authenticated reads do not each cost a committed write.
    """
    h = hash_token(token)
    with engine.connect() as conn:
        row = conn.execute(_sql("token_lookup"), {"h": h}).first()
        if row is None:
            return None
        if row.stale:
            conn.execute(_sql("token_touch"), {"h": h})
            conn.commit()
    return User(row.name, row.role, bool(row.privileged), frozenset(row.devices), row.event_source, row.expires_at)


def init_admin(engine: Engine, password_file: Path, name: str = "admin") -> bool:
    """A first admin account when there is no active one: a generated password, written (with the
    user name) to ``password_file`` (mode 0600, created atomically). Returns whether one was made;
    idempotent (an existing active admin, whoever it is, leaves everything as it is)."""
    if has_active_admin(engine):
        return False
    password = new_password()
    add_user(engine, name, "admin", password=password, ttl_s=False)
    password_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = password_file.with_name(f".{password_file.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"# onemap: the first admin account (log in in the viewer; then change the password with\n"
                f"# `onemap users password {name}` and delete this file)\n"
                f"user: {name}\npassword: {password}\n")
    os.replace(tmp, password_file)
    return True
