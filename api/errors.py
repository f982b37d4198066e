"""Every error leaves the API as JSON ``{"detail": ..., "status": N}`` and never with a stack trace.

* :class:`ApiError` (and subclasses) carry the status, extra JSON fields and headers.
* Request validation (pydantic) → 422 with field-level ``errors``.
* PostGIS unreachable (connection refused, lost, pool exhausted) → 503 with ``Retry-After``.
* Anything else → 500 with a generic message; the traceback goes to the log only.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status, a human message, and optional extra JSON fields/headers."""

    status: int = 400

    def __init__(
        self,
        detail: str,
        status: int | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.extra = extra


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401

    def __init__(self, detail: str = "authentication required: send Authorization: Bearer <token>") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="onemap"'})


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class DatabaseUnavailable(ApiError):
    status = 503


def error_response(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body = {"detail": detail, "status": status, **extra}
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
    from gis.cluster import ClusterError

    return isinstance(exc, ClusterError | ConnectionError)


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.detail, exc.headers, **exc.extra)

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
        if is_db_unavailable(exc):
            log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return error_response(
                503, "database unavailable, retry later", {"Retry-After": str(retry_after_s)}
            )
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    import psycopg

    from gis.cluster import ClusterError

    # Registered by class so they are answered inside the app (the catch-all Exception handler
    # also answers, but Starlette re-raises into the server log after it).
    for cls in (sa_exc.SQLAlchemyError, psycopg.Error, ClusterError, ConnectionError):
        app.add_exception_handler(cls, unhandled)
    app.add_exception_handler(Exception, unhandled)
