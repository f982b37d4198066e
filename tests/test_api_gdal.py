"""GDAL's OGC API – Features driver (through pyogrio) reads the collections from a real server
and pages through events by following ``next`` links."""

from __future__ import annotations

import pytest

from tests.api_support import (  # noqa: F401
    N_EVENTS,
    api_db_url,
    api_settings,
    make_settings,
    running_server,
    tiles_dir,
    tokens,
)

pyogrio = pytest.importorskip("pyogrio")


class CountItems:
    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app
        self.items_requests: list[str] = []

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "http" and scope["path"].endswith("/items"):
            self.items_requests.append(scope["path"] + "?" + scope["query_string"].decode())
        await self.app(scope, receive, send)


def test_gdal_oapif(api_db_url, tiles_dir, tokens) -> None:  # noqa: F811
    counter: list[CountItems] = []

    def wrap(app):  # noqa: ANN001, ANN202
        counter.append(CountItems(app))
        return counter[0]

    # OAPIF sends its own HEADERS (Accept), which makes GDAL ignore GDAL_HTTP_HEADERS; configure
    # the server to allow these layers anonymously (as a deployment for QGIS users may) and also
    # pass the token the GDAL >= 3.9 way.
    anonymous = ["buildings", "communities", "grid_cells", "cameras", "checkpoints", "events", "geofences"]
    settings = make_settings(api_db_url, tiles_dir, anonymous_collections=anonymous)
    pyogrio.set_gdal_config_options({"GDAL_HTTP_AUTH": "BEARER", "GDAL_HTTP_BEARER": tokens["viewer"],
                                     "GDAL_HTTP_TIMEOUT": "120"})
    try:
        with running_server(settings, wrap=wrap) as base:
            layers = {name for name, _ in pyogrio.list_layers(f"OAPIF:{base}/")}
            assert {"buildings", "events", "cameras", "grid_cells", "communities", "checkpoints",
                    "geofences"} <= layers
            assert "patrol_tracks" not in layers and "population_by_grid" not in layers
            buildings = pyogrio.read_dataframe(f"OAPIF:{base}/", layer="buildings")
            assert len(buildings) == 20 and buildings.crs is not None
            assert buildings.geometry.iloc[0].geom_type in ("MultiPolygon", "Polygon")
            counter[0].items_requests.clear()
            events = pyogrio.read_dataframe(f"OAPIF:{base}/", layer="events", PAGE_SIZE=60)
            assert len(events) >= N_EVENTS
            assert events["id"].is_unique if "id" in events else True
            assert {"category", "status", "reported_at"} <= set(events.columns)
            pages = [r for r in counter[0].items_requests if "/collections/events/items" in r]
            assert len(pages) >= 5, pages  # several pages through `next` links
            assert any("offset=60" in p for p in pages)
            lon = events.geometry.x
            assert ((lon > 117.38) & (lon < 117.40)).all()
    finally:
        pyogrio.set_gdal_config_options({"GDAL_HTTP_AUTH": None, "GDAL_HTTP_BEARER": None,
                                         "GDAL_HTTP_TIMEOUT": None})
