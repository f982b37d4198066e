"""FastAPI dependencies: the per-app state, database engine/connections, current user and roles."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine, create_engine, event

from api.auth import TokenCache, User, hash_token, lookup_token
from api.errors import DatabaseUnavailable, Forbidden, Unauthorized
from core.errors import ConfigError
from core.settings import Settings
from gis import policy
from gis.dbroles import check_api_role
from gis.policy import Permission

if TYPE_CHECKING:
    from api.live import Broker
    from api.tilestore import TileStore

log = logging.getLogger(__name__)

@dataclass
class AppState:
    """Everything one app instance shares between requests (kept on ``app.state.onemap``)."""

    settings: Settings
    tiles: TileStore
    broker: Broker
    tokens: TokenCache
    _engine: Engine | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    caches: dict[str, Any] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = make_engine(self.settings)
        return self._engine

    def check_database_role(self) -> None:
        """At startup: refuse (ConfigError) to serve as a superuser or the schema owner. When the
        database cannot be reached yet, the same check runs on every new pooled connection."""
        from api.errors import is_db_unavailable

        try:
            with self.engine.connect():
                pass
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - unreachable now: checked again on first connection
            if not is_db_unavailable(exc):
                raise
            log.warning("database not reachable at startup (%s); its role is checked on first connection",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def make_engine(settings: Settings) -> Engine:
    """The API's own pool, as role ``onemap_api`` (:func:`gis.db.api_database_url`): pre-ping
    (recovers after a database restart), bounded waits, and every new connection checked by
    :func:`gis.dbroles.check_api_role` (no superuser, no owner, unless explicitly allowed)."""
    from gis.cluster import ClusterError
    from gis.db import api_database_url

    try:
        url = api_database_url(settings.db)
    except (ClusterError, ConfigError) as exc:
        raise DatabaseUnavailable(
            f"database not configured or not initialised: {exc}",
            retry_after_s=settings.api.db_retry_after_s,
        ) from exc
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.api.api_pool_size,
        max_overflow=settings.api.api_pool_overflow,
        pool_timeout=settings.api.api_pool_timeout_s,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": settings.api.api_connect_timeout_s,
            "application_name": "onemap-api",
            "options": f"-c statement_timeout={settings.api.api_statement_timeout_ms}",
        },
    )
    allow = settings.db.allow_privileged_db_user

    @event.listens_for(engine, "connect")
    def _check_role(dbapi_conn: Any, _record: Any) -> None:
        try:
            check_api_role(dbapi_conn, allow)
        finally:
            dbapi_conn.rollback()

    return engine


def app_state(request: Request) -> AppState:
    return request.app.state.onemap  # type: ignore[no-any-return]


State = Annotated[AppState, Depends(app_state)]


def db_engine(state: State) -> Engine:
    return state.engine


def db_conn(state: State) -> Iterator[Connection]:
    """A pooled connection for reads (rolled back at the end)."""
    with state.engine.connect() as conn:
        yield conn


DbEngine = Annotated[Engine, Depends(db_engine)]
DbConn = Annotated[Connection, Depends(db_conn)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    return token.strip()


def resolve_user(state: AppState, token: str | None, *, fresh: bool = False) -> User | None:
    """None for anonymous; raises 401 for unknown, revoked or expired tokens. ``fresh``: skip
    the cache (the live stream re-checks its token this way)."""
    if token is None:
        return None
    key = hash_token(token)
    hit, user = (False, None) if fresh else state.tokens.get(key)
    if not hit:
        user = lookup_token(state.engine, token)
        state.tokens.put(key, user)
    if user is None:
        raise Unauthorized("invalid, expired or revoked token")
    if user.expires_at is not None and user.expires_at <= datetime.now(UTC):
        raise Unauthorized("token expired; log in again")
    return user


def current_user(request: Request, state: State) -> User | None:
    user = resolve_user(state, _bearer(request))
    request.state.user = user
    return user


CurrentUser = Annotated["User | None", Depends(current_user)]


def require(permission: Permission) -> Callable[..., User]:
    """Dependency: an authenticated user holding ``permission`` (401 anonymous, 403 other roles).

    The roles come from the one table, :data:`gis.policy.POLICY`.
    """

    def dep(user: CurrentUser) -> User:
        return check(user, permission)

    dep.__name__ = f"require_{permission}"
    dep.permission = permission  # type: ignore[attr-defined]  # read by tests/test_policy.py
    return dep


def check(user: User | None, permission: Permission) -> User:
    if user is None:
        raise Unauthorized()
    if not policy.allows(user.role, permission):
        allowed = ", ".join(sorted(policy.roles_for(permission)))
        raise Forbidden(f"role {user.role!r} may not do this; allowed roles: {allowed}")
    return user


def client_addr(request: Request) -> str | None:
    return request.client.host if request.client else None
