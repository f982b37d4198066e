"""``GET /``: the viewer page for browsers, the OGC API landing page (JSON) for clients.

Static mounts (``/viewer``, ``/cesium``, ``/media``) are added by :func:`mount_static`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from api.routes.features import landing
from core.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
VIEWER_DIR = STATIC_DIR / "viewer"

router = APIRouter(tags=["viewer"])

_MISSING_VIEWER = """<!doctype html><html lang="en"><meta charset="utf-8"><title>onemap</title>
<h1>onemap</h1><p>The viewer files (api/static/viewer/index.html) are not installed.
The API is up: see <a href="/?f=json">the landing page</a> and <a href="/docs">the API docs</a>.</p></html>"""


def wants_html(request: Request, f: str | None) -> bool:
    if f in ("json", "geojson"):
        return False
    if f == "html":
        return True
    accept = request.headers.get("accept", "")
    return "text/html" in accept


@router.get(
    "/",
    summary="Viewer (text/html) or OGC API landing page (application/json)",
    response_class=Response,
    responses={200: {"content": {"text/html": {}, "application/json": {}}}},
)
def root(
    request: Request,
    f: Annotated[str | None, Query(description="json for the landing page, html for the viewer")] = None,
    mode: Annotated[str | None, Query(description="bigscreen for the wall display")] = None,
) -> Response:
    if f not in (None, "", "json", "geojson", "html"):
        from api.errors import BadRequest

        raise BadRequest(f"unsupported format f={f!r}; use json or html")
    if not wants_html(request, f):
        return landing(request)
    index = VIEWER_DIR / "index.html"
    if index.is_file():
        return FileResponse(index, media_type="text/html; charset=utf-8",
                            headers={"cache-control": "no-cache", "vary": "Accept"})
    return HTMLResponse(_MISSING_VIEWER, headers={"vary": "Accept"})


class OptionalStaticFiles(StaticFiles):
    """Static files whose folder may not exist (yet): 404 instead of a server error."""

    async def check_config(self) -> None:
        if self.directory is not None and not Path(self.directory).is_dir():
            raise StarletteHTTPException(404, f"{self.directory} is not installed")


@router.get("/docs", include_in_schema=False)
def swagger_docs() -> HTMLResponse:
    """Swagger UI for /api from the local npm swagger-ui-dist files (/swagger), never a CDN."""
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(openapi_url="/api", title="onemap API",
                               swagger_js_url="/swagger/swagger-ui-bundle.js",
                               swagger_css_url="/swagger/swagger-ui.css",
                               swagger_favicon_url="/swagger/favicon-32x32.png")


@router.get("/viewer-config", summary="Viewer configuration (online base map, if any)")
def viewer_config(request: Request) -> dict[str, object]:
    """``{"basemap": null}`` unless an online base map is configured (``ONEMAP_BASEMAP_URL``):
    the viewer then offers it in its imagery switcher. Off by default."""
    settings: Settings = request.app.state.onemap.settings
    return {"basemap": settings.basemap.client_config()}


def mount_static(app: FastAPI, settings: Settings) -> None:
    app.mount("/swagger", OptionalStaticFiles(directory=settings.paths.swagger_ui_dir, check_dir=False),
              name="swagger")
    app.mount("/viewer", OptionalStaticFiles(directory=VIEWER_DIR, check_dir=False), name="viewer")
    app.mount("/cesium", OptionalStaticFiles(directory=settings.paths.cesium_dir, check_dir=False), name="cesium")
    media = OptionalStaticFiles(directory=settings.paths.media_dir, check_dir=False)
    app.mount("/media", media, name="media")
