"""3D Tiles, quantized-mesh terrain, imagery tiles and the tileset catalog, straight from the tiles folder.

Anonymous (tiles carry no personal data). See :mod:`api.tilestore` for caching, ETags, gzip,
ranges and path safety.
"""

from __future__ import annotations

import json
import os

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.errors import NotFound
from api.tilestore import TileStore, file_response

router = APIRouter(tags=["tiles"])

_FILE_RESPONSES = {
    200: {"description": "The file (gzip-encoded if the client accepts it)."},
    206: {"description": "Partial content (Range)."},
    304: {"description": "Not modified (If-None-Match / If-Modified-Since)."},
    404: {"description": "No such file under the tiles folder."},
    416: {"description": "Range not satisfiable."},
}


async def _serve(request: Request, rel: str) -> Response:
    store: TileStore = request.app.state.onemap.tiles
    entry = store.peek(rel)
    if entry is None:
        entry = await run_in_threadpool(store.get, rel)
        if entry is None:
            raise NotFound(f"no tile file {rel!r}")
    if entry.body is None:  # too big to cache: read from disk off the event loop
        return await run_in_threadpool(file_response, store, entry, request.headers, request.method)
    return file_response(store, entry, request.headers, request.method)


@router.api_route("/tiles/{layer}/{path:path}", methods=["GET", "HEAD"], responses=_FILE_RESPONSES,
                  summary="A tileset file")
async def tile_file(request: Request, layer: str, path: str) -> Response:
    """``tileset.json``, ``.glb``, ``.b3dm``, ``.pnts``, ... of one layer."""
    return await _serve(request, f"{layer}/{path}")


@router.api_route("/terrain/{path:path}", methods=["GET", "HEAD"], responses=_FILE_RESPONSES,
                  summary="Quantized-mesh terrain")
async def terrain_file(request: Request, path: str) -> Response:
    """``layer.json`` and ``{z}/{x}/{y}.terrain`` (``application/vnd.quantized-mesh``)."""
    return await _serve(request, f"terrain/{path}")


@router.api_route("/imagery/{path:path}", methods=["GET", "HEAD"], responses=_FILE_RESPONSES,
                  summary="Imagery tiles (TMS)")
async def imagery_file(request: Request, path: str) -> Response:
    """``tilemapresource.xml``, ``imagery.json`` and ``{z}/{x}/{y}.webp|png`` of the orthophoto
    pyramid (TMS rows counted from the south; Cesium ``TileMapServiceImageryProvider``)."""
    return await _serve(request, f"imagery/{path}")


@router.get("/tilesets", summary="Catalog of the built tilesets")
async def tilesets(request: Request) -> Response:
    """``index.json`` written by ``onemap tiles build``; without it, a catalog from the folders."""
    store: TileStore = request.app.state.onemap.tiles
    entry = store.peek("index.json") or await run_in_threadpool(store.get, "index.json")
    if entry is not None:
        return file_response(store, entry, request.headers, request.method)
    catalog = await run_in_threadpool(scan_catalog, store)
    return Response(orjson.dumps(catalog), media_type="application/json",
                    headers={"cache-control": f"public, max-age={store.json_max_age_s}"})


def scan_catalog(store: TileStore) -> dict[str, object]:
    """The catalog shape of ``index.json`` from whatever ``*/tileset.json`` exist."""
    root = store.real_root()
    layers: list[dict[str, object]] = []
    terrain: dict[str, object] | None = None
    if root is not None:
        for name in sorted(os.listdir(root)):
            folder = os.path.join(root, name)
            if name == "terrain" and os.path.isfile(os.path.join(folder, "layer.json")):
                terrain = {"url": "/terrain"}
            elif os.path.isfile(os.path.join(folder, "tileset.json")):
                layer: dict[str, object] = {"name": name, "url": f"/tiles/{name}/tileset.json"}
                try:
                    with open(os.path.join(folder, "tileset.json"), "rb") as fh:
                        region = json.load(fh).get("root", {}).get("boundingVolume", {}).get("region")
                    if region:
                        layer["region"] = region
                except (OSError, ValueError, AttributeError):
                    pass
                layers.append(layer)
    return {"layers": layers, "terrain": terrain}
