"""Analytics response models: /api documents a schema for every /analytics route, and real
answers validate against the route's model (so the documented shape is the body's shape)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from tests.api_support import LAT0, LON0, auth

WIN = "start=2026-03-01T00:00:00Z&end=2026-03-04T00:00:00Z"
DAY = "day=2026-03-02"


def _analytics_routes() -> dict[str, APIRoute]:
    import importlib
    import pkgutil

    import api.routes

    modules = [importlib.import_module(f"api.routes.{m.name}") for m in pkgutil.iter_modules(api.routes.__path__)]
    return {r.path: r for m in modules if hasattr(m, "router") for r in m.router.routes
            if isinstance(r, APIRoute) and r.path.startswith("/analytics")}


def test_openapi_documents_every_analytics_response(client) -> None:  # noqa: ANN001
    doc = client.get("/api").json()
    paths = {p: ops for p, ops in doc["paths"].items() if p.startswith("/analytics")}
    assert set(paths) == set(_analytics_routes())
    schemas = doc["components"]["schemas"]
    for path, ops in paths.items():
        content = ops["get"]["responses"]["200"]["content"]
        schema = next(iter(content.values()))["schema"]
        assert schema and schema != {}, path
        ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
        if ref:
            assert schemas[ref.rsplit("/", 1)[1]]["properties"], path
        else:
            assert schema.get("anyOf") or schema.get("oneOf"), path  # patrol/track: GeoJSON or CZML


@pytest.fixture(scope="module")
def walked(client, tokens) -> None:  # noqa: ANN001
    """W001 (device D001) walks 40 minutes on 2026-03-02, 15 m a minute, out of its patrol area."""
    t0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    fixes = [{"device_id": "D001", "t": (t0 + timedelta(minutes=i)).isoformat(),
              "lon": LON0 + 0.0001 + i * 0.00016, "lat": LAT0 + 0.0001 + i * 0.00005, "accuracy": 5.0}
             for i in range(40)]
    r = client.post("/gps/fixes", json=fixes, headers=auth(tokens, "device"))
    assert r.status_code == 202 and r.json()["accepted"] == 40, r.text


def _check(client, tokens, url: str, role: str = "admin") -> Any:  # noqa: ANN001
    r = client.get(url, headers=auth(tokens, role))
    assert r.status_code == 200, (url, r.text)
    route = _analytics_routes()[url.split("?")[0]]
    body = r.json()
    TypeAdapter(route.response_model).validate_python(body, strict=False)
    return body


@pytest.mark.usefixtures("walked")
def test_answers_match_their_models(client, tokens) -> None:  # noqa: ANN001
    pt = f"lon={LON0 + 0.001}&lat={LAT0 + 0.001}"
    for cell in ("grid", "square", "hex"):
        assert _check(client, tokens, f"/analytics/events/density?{WIN}&cell={cell}&size=100")["features"]
    assert _check(client, tokens, f"/analytics/events/hotspots?{WIN}&cell=hex&size=100")["features"]
    for group in ("category", "grid", "worker"):
        assert _check(client, tokens, f"/analytics/events/sla?group={group}")
    assert _check(client, tokens, f"/analytics/patrollers/nearest?{pt}&n=3")
    for i in range(5):  # the cameras' own surroundings
        _check(client, tokens, f"/analytics/cameras/visible?lon={LON0 + 0.0007 + i * 0.0007}"
                               f"&lat={LAT0 + 0.0005 + i * 0.0006}&h=1.5")
    assert _check(client, tokens, f"/analytics/patrol/mileage?{DAY}")
    assert _check(client, tokens, f"/analytics/patrol/track?worker_id=W001&{WIN}")["features"]
    assert _check(client, tokens, f"/analytics/patrol/track?worker_id=W001&{WIN}&format=czml")
    assert _check(client, tokens, f"/analytics/patrol/coverage?{DAY}")
    assert _check(client, tokens, f"/analytics/patrol/checkins?{DAY}")
    _check(client, tokens, "/analytics/alarms?since=2026-03-01T00:00:00Z")
    for level in ("building", "grid", "community"):
        assert _check(client, tokens, f"/analytics/population?level={level}")
        assert _check(client, tokens, f"/analytics/population?level={level}", role="privileged")
    assert _check(client, tokens, "/analytics/kpis")
