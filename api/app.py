"""The FastAPI application factory: ``create_app(settings)``.

Routers live in ``api/routes/``, dependencies in :mod:`api.deps`, errors in :mod:`api.errors`.
Creating an app never touches the database: the pool is created on first use, so the service
starts (and answers 503 with Retry-After) while PostGIS is down, and recovers by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from api.auth import TokenCache
from api.deps import AppState
from api.edge import InputGuard, SecurityHeaders
from api.errors import install_error_handlers
from api.limits import RateLimit, StreamLimit
from api.live import Broker
from api.middleware import BodyLimitMiddleware, TileFastPath
from api.openapi import to_openapi30
from api.routes import access as access_routes
from api.routes import analytics, events, features, gps, stream, tiles, viewer
from api.routes import auth as auth_routes
from api.routes import civil as civil_routes
from api.routes import dispatch as dispatch_routes
from api.tilestore import TileStore
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"


def create_app(settings: Settings | None = None, *, tiles_dir: Path | None = None) -> FastAPI:
    """The app for ``settings`` (default :func:`get_settings`); ``tiles_dir`` overrides ``settings.tiles.tiles_dir``."""
    settings = settings or get_settings()
    if tiles_dir is not None:
        settings = settings.replace(tiles=settings.tiles.model_copy(update={"tiles_dir": Path(tiles_dir)}))
    state = _make_state(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # refuse to serve as a superuser / the schema owner (ConfigError stops the startup)
        await asyncio.to_thread(state.check_database_role)
        escalation = asyncio.create_task(dispatch_routes.escalation_loop(state.engine))
        try:
            yield
        finally:
            escalation.cancel()
            await state.broker.stop()
            state.dispose()

    app = FastAPI(
        title="onemap API",
        version=API_VERSION,
        description="3D one-map server for Jiefang Street, Bengbu: OGC API – Features, 3D Tiles, "
                    "analytics, live stream. Contract: docs/api.md.",
        openapi_url="/api",
        docs_url=None,  # /docs is served by api/routes/viewer.py from local Swagger UI files (no CDN)
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.onemap = state
    install_error_handlers(app, settings.api.db_retry_after_s)
    for module in (viewer, features, tiles, analytics, access_routes, civil_routes, events, dispatch_routes, gps,
                   stream, auth_routes):
        app.include_router(module.router)
    viewer.mount_static(app, settings)

    expose = ["ETag", "Content-Range", "Content-Encoding", "Content-Length", "Retry-After", "Location"]
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.api.cors_origins,
        allow_methods=["GET", "HEAD", "POST", "PATCH", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "If-None-Match", "Range", "Accept"],
        expose_headers=expose,
        max_age=600,
    )
    # Outermost: cached tiles are answered before routing (see TileFastPath).
    app.add_middleware(TileFastPath, store=state.tiles, cors_origins=settings.api.cors_origins,
                       expose_headers=", ".join(expose))
    # Abuse limits, then the edge checks, outermost the security headers (every response, tiles
    # included): api/limits.py, api/edge.py, docs/security.md.
    app.add_middleware(StreamLimit, per_token=settings.api.max_streams_per_token,
                       retry_after_s=settings.api.db_retry_after_s)
    app.add_middleware(RateLimit, rate=settings.api.rate_limit_per_s, burst=settings.api.rate_limit_burst)
    app.add_middleware(InputGuard, settings=settings)
    app.add_middleware(SecurityHeaders, settings=settings)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(title=app.title, version=app.version, description=app.description,
                              routes=app.routes)
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}}
            doc["security"] = [{}, {"bearer": []}]
            app.openapi_schema = to_openapi30(doc)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


@dataclass(frozen=True)
class AppFactory:
    """A picklable ``create_app(tiles_dir=...)`` call: each uvicorn worker process builds its app from it."""

    tiles_dir: Path | None = None

    def __call__(self) -> FastAPI:
        return create_app(tiles_dir=self.tiles_dir)


def _make_state(settings: Settings) -> AppState:
    from gis.db import api_libpq_url

    tiles_store = TileStore(
        settings.tiles.tiles_dir,
        cache_bytes=settings.tiles.tile_cache_bytes,
        max_file_bytes=settings.tiles.tile_cache_max_file_bytes,
        max_age_s=settings.tiles.tile_max_age_s,
        json_max_age_s=settings.tiles.tile_json_max_age_s,
        gzip_min_bytes=settings.tiles.gzip_min_bytes,
    )
    broker = Broker(
        lambda: api_libpq_url(settings.db),
        channel=settings.stream.sse_channel,
        ring_size=settings.stream.sse_ring_size,
        client_queue=settings.stream.sse_client_queue,
        reconnect_min_s=settings.stream.sse_reconnect_min_s,
        reconnect_max_s=settings.stream.sse_reconnect_max_s,
        poll_s=settings.stream.sse_heartbeat_s,
    )
    return AppState(settings=settings, tiles=tiles_store, broker=broker,
                    tokens=TokenCache(settings.api.auth_cache_s))
