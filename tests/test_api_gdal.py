"""GDAL's OGC API – Features driver (through pyogrio) reads the collections from a real server
and pages through events by following ``next`` links.

GDAL runs in a child process: pyogrio holds the GIL while it reads features, so a client in this
process would starve the server thread it is talking to (seen as a 120 s curl time-out).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.api_support import N_EVENTS, make_settings, running_server

pytest.importorskip("pyogrio")

#: the GDAL client: lists the layers, reads buildings, pages through events; prints JSON
CLIENT = r"""
import json, sys
import pyogrio
base = sys.argv[1]
out = {"layers": sorted(name for name, _ in pyogrio.list_layers(f"OAPIF:{base}/"))}
b = pyogrio.read_dataframe(f"OAPIF:{base}/", layer="buildings")
out["buildings"] = {"n": len(b), "crs": str(b.crs) if b.crs else None, "geom_type": b.geometry.iloc[0].geom_type}
print("BUILDINGS_DONE", file=sys.stderr, flush=True)
e = pyogrio.read_dataframe(f"OAPIF:{base}/", layer="events", PAGE_SIZE=60)
out["events"] = {"n": len(e), "ids_unique": bool(e["id"].is_unique) if "id" in e else None,
                 "columns": list(e.columns), "lon": [float(v) for v in e.geometry.x]}
print(json.dumps(out))
"""


class CountItems:
    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app
        self.items_requests: list[str] = []

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "http" and scope["path"].endswith("/items"):
            self.items_requests.append(scope["path"] + "?" + scope["query_string"].decode())
        await self.app(scope, receive, send)


def test_gdal_oapif(api_db_url, tiles_dir, tokens) -> None:
    counter: list[CountItems] = []

    def wrap(app):  # noqa: ANN001, ANN202
        counter.append(CountItems(app))
        return counter[0]

    # OAPIF sends its own HEADERS (Accept), which makes GDAL ignore GDAL_HTTP_HEADERS; configure
    # the server to allow these layers anonymously (as a deployment for QGIS users may) and also
    # pass the token the GDAL >= 3.9 way.
    anonymous = ["buildings", "communities", "grid_cells", "cameras", "checkpoints", "events", "geofences"]
    settings = make_settings(api_db_url, tiles_dir, anonymous_collections=anonymous)
    env = {**os.environ, "GDAL_HTTP_AUTH": "BEARER", "GDAL_HTTP_BEARER": tokens["viewer"], "GDAL_HTTP_TIMEOUT": "60"}
    with running_server(settings, wrap=wrap) as base:
        done = subprocess.run([sys.executable, "-c", CLIENT, base], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
    layers = set(out["layers"])
    assert {"buildings", "events", "cameras", "grid_cells", "communities", "checkpoints", "geofences"} <= layers
    assert "patrol_tracks" not in layers and "population_by_grid" not in layers
    assert out["buildings"]["n"] == 20 and out["buildings"]["crs"] is not None
    assert out["buildings"]["geom_type"] in ("MultiPolygon", "Polygon")
    events = out["events"]
    assert events["n"] >= N_EVENTS
    assert events["ids_unique"] in (True, None)
    assert {"category", "status", "reported_at"} <= set(events["columns"])
    pages = [r for r in counter[0].items_requests if "/collections/events/items" in r]
    assert len(pages) >= 5, pages  # several pages through `next` links
    assert any("offset=60" in p for p in pages)
    assert all(117.38 < lon < 117.40 for lon in events["lon"])
