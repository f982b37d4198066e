"""Every error leaves the API as JSON ``{"detail": ..., "status": N}`` and never with a stack trace.

* :class:`core.errors.OnemapError` (the one hierarchy, raised by routes and by gis/pipelines) →
  the status in :data:`STATUS`, the one table; ``hint`` and ``extra`` become JSON fields.
* Request validation (pydantic) → 422 with field-level ``errors``.
* PostGIS unreachable (connection refused, lost, pool exhausted) → 503 with ``Retry-After``.
* A statement cancelled by its timeout (``QueryCanceled``) → 503 with ``Retry-After``, logged
  as one warning line (no traceback).
* Anything else → 500 with a generic message; the traceback goes to the log only.

The names routes used before the hierarchy (``BadRequest``, ``NotFound``, ...) remain as thin
subclasses of the core classes.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from core.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    InputError,
    LimitExceededError,
    NotFoundError,
    OnemapError,
    PermissionDeniedError,
    UnavailableError,
)

log = logging.getLogger(__name__)

#: core error class → HTTP status (the most specific class in an error's MRO wins; else 500).
#: LimitExceededError is 413 (too large), or 429 (too many/too often) when it sets retry_after_s.
STATUS: Final[dict[type[OnemapError], int]] = {
    InputError: 400,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    LimitExceededError: 413,
    ConfigError: 500,
    UnavailableError: 503,
}
WWW_AUTHENTICATE: Final[str] = 'Bearer realm="onemap"'


def status_for(exc: OnemapError) -> int:
    if isinstance(exc, LimitExceededError) and exc.retry_after_s is not None:
        return 429
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def headers_for(exc: OnemapError, default_retry_after_s: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    retry = getattr(exc, "retry_after_s", None)
    if isinstance(exc, UnavailableError):
        headers["Retry-After"] = str(retry if retry is not None else default_retry_after_s)
    elif retry is not None:
        headers["Retry-After"] = str(retry)
    return headers


class BadRequest(InputError):
    """400."""


class Unauthorized(AuthenticationError):
    """401 with ``WWW-Authenticate: Bearer``."""

    def __init__(self, detail: str = "authentication required: send Authorization: Bearer <token>",
                 **kw: Any) -> None:
        super().__init__(detail, **kw)


class Forbidden(PermissionDeniedError):
    """403."""


class NotFound(NotFoundError):
    """404."""


class Conflict(ConflictError):
    """409."""


class PayloadTooLarge(LimitExceededError):
    """413."""


class DatabaseUnavailable(UnavailableError):
    """503 with ``Retry-After``."""

    def __init__(self, message: str, *, retry_after_s: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


def error_response(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body = {"detail": detail, "status": status, **{k: v for k, v in extra.items() if k not in ("detail", "status")}}
    return Response(
        orjson.dumps(body, default=str), status_code=status, media_type="application/json", headers=headers
    )


def is_db_unavailable(exc: BaseException) -> bool:
    """True for errors meaning "PostGIS cannot be reached right now" (not bad SQL or bad data)."""
    import psycopg

    if isinstance(exc, sa_exc.TimeoutError):  # pool exhausted / connection wait timed out
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        if isinstance(orig, psycopg.errors.QueryCanceled):  # statement_timeout: not an outage
            return False
        return isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return not isinstance(exc, psycopg.errors.QueryCanceled)
    return isinstance(exc, UnavailableError | ConnectionError)


def is_query_cancelled(exc: BaseException) -> bool:
    """True for a statement cancelled by the server (statement_timeout, pg_cancel_backend): the
    database is fine, the request was too heavy right now → 503 with Retry-After, never 500."""
    import psycopg

    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    return isinstance(orig, psycopg.errors.QueryCanceled)


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    async def onemap_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OnemapError)
        status = status_for(exc)
        if status >= 500:
            log.warning("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
        extra = dict(exc.extra)
        if exc.hint:
            extra["hint"] = exc.hint
        return error_response(status, exc.message, headers_for(exc, retry_after_s), **extra)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, detail, dict(exc.headers or {}))

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return error_response(422, f"invalid request: {summary}", errors=errors)

    async def unhandled(request: Request, exc: Exception) -> Response:
        if is_query_cancelled(exc):
            log.warning("query cancelled (statement timeout) on %s %s", request.method, request.url.path)
            return error_response(
                503, "the query took too long and was cancelled; narrow the request or retry later",
                {"Retry-After": str(retry_after_s)})
        if is_db_unavailable(exc):
            log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return error_response(
                503, "database unavailable, retry later", {"Retry-After": str(retry_after_s)}
            )
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error")

    app.add_exception_handler(OnemapError, onemap_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    import psycopg

    # Registered by class so they are answered inside the app (the catch-all Exception handler
    # also answers, but Starlette re-raises into the server log after it).
    for cls in (sa_exc.SQLAlchemyError, psycopg.Error, ConnectionError):
        app.add_exception_handler(cls, unhandled)
    app.add_exception_handler(Exception, unhandled)
