"""Password logins: verify, issue an expiring token, and limit guessing.

Failed attempts are rows of ``login_failures`` (so the limit holds across every server process):
once ``max_failures`` failures for one user name OR from one client address fall within
``window_s``, further attempts are refused with :class:`LoginThrottled` (429 + ``Retry-After``)
before the password is even checked, until the oldest failure leaves the window. Every failure,
success and refusal is written to ``audit_log``. SQL: ``gis/sql/accounts/login_*.sql``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Engine

from core.errors import AuthenticationError, LimitExceededError
from gis.accounts import DEVICE_ROLE, IssuedToken, User, _insert_token, _sql, verify_password, write_audit


class LoginFailed(AuthenticationError):
    """Wrong user name or password (the message never says which)."""


class LoginThrottled(LimitExceededError):
    """Too many failed logins for this user or from this address; ``retry_after_s`` says when to retry."""


@dataclass(frozen=True)
class LoginPolicy:
    ttl_s: float | None  # lifetime of the token issued (None: never expires)
    max_failures: int = 5
    window_s: float = 300.0


def _throttle(engine: Engine, username: str, client: str | None, policy: LoginPolicy) -> None:
    with engine.connect() as conn:
        row = conn.execute(_sql("login_failures_count"), {
            "n": username, "c": client, "window": policy.window_s}).one()
    waits = []
    if row.by_user >= policy.max_failures:
        waits.append(float(row.user_wait_s))
    if client is not None and row.by_client >= policy.max_failures:
        waits.append(float(row.client_wait_s))
    if waits:
        retry = max(1, math.ceil(max(waits)))
        with engine.begin() as conn:
            write_audit(conn, None, "auth.login_throttled", username,
                        {"failures_user": row.by_user, "failures_client": row.by_client, "retry_after_s": retry},
                        client, ids=[username])
        raise LoginThrottled(
            f"too many failed logins for this user or from this address; retry in {retry} s",
            retry_after_s=retry)


def login(engine: Engine, username: str, password: str, client: str | None, policy: LoginPolicy) -> IssuedToken:
    """A new token for ``username`` when ``password`` is right (argon2id), else :class:`LoginFailed`;
    :class:`LoginThrottled` while too many recent failures stand against the user or address."""
    _throttle(engine, username, client, policy)
    with engine.connect() as conn:
        row = conn.execute(_sql("user_by_name"), {"n": username}).first()
    ok = verify_password(row.password_hash if row is not None else None, password)
    if not ok or row is None or row.revoked or row.role == DEVICE_ROLE:
        with engine.begin() as conn:
            conn.execute(_sql("login_failure_insert"), {"n": username, "c": client})
            reason = ("unknown user" if row is None else "revoked" if row.revoked
                      else "device account" if row.role == DEVICE_ROLE and ok else "wrong password")
            write_audit(conn, None, "auth.login_failed", username, {"reason": reason}, client, ids=[username])
        raise LoginFailed("invalid user name or password")
    with engine.begin() as conn:
        issued = _insert_token(conn, row.id, "login", policy.ttl_s)
        conn.execute(_sql("login_failures_clear"), {"n": username})
        who = User(username, row.role, bool(row.privileged))
        write_audit(conn, who, "auth.login", username, {"expires_at": issued.expires_at}, client, ids=[username])
    return issued
