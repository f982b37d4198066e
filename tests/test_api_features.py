"""OGC API – Features against the real PostGIS: landing, conformance, collections, paging,
bbox, datetime, CQL2, sortby, properties, property filters, queryables, population suppression."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa

from tests.api_support import LAT0, LON0, N_EVENTS, auth, event_rows

GEOJSON = "application/geo+json"


def get(client, tokens, path, role="viewer", **kw):
    return client.get(path, headers={**auth(tokens, role), **kw.pop("headers", {})}, **kw)


def test_landing_json_and_html(client, tokens) -> None:
    r = client.get("/", headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    rels = {link["rel"] for link in r.json()["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= rels
    assert client.get("/?f=json").json()["title"]
    html = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")


def test_conformance_and_openapi(client) -> None:
    classes = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in classes
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30" in classes
    doc = client.get("/api").json()
    assert doc["openapi"].startswith("3.0")
    assert "/collections/{collection_id}/items" in doc["paths"]
    text = client.get("/api").text
    assert '"type":"null"' not in text.replace(" ", "")


def test_collections_depend_on_role(client, tokens) -> None:
    anon = {c["id"] for c in client.get("/collections").json()["collections"]}
    assert anon == {"buildings", "communities", "grid_cells", "cameras", "checkpoints"}
    viewer = {c["id"] for c in get(client, tokens, "/collections").json()["collections"]}
    assert "events" in viewer and "patrol_tracks" not in viewer and "population_by_grid" not in viewer
    admin = {c["id"] for c in get(client, tokens, "/collections", "admin").json()["collections"]}
    assert len(admin) == 12 and "facilities" in admin


def test_collection_metadata_and_extent(client, tokens) -> None:
    c = get(client, tokens, "/collections/events").json()
    assert c["id"] == "events" and c["itemType"] == "feature"
    w, s, e, n = c["extent"]["spatial"]["bbox"][0]
    assert w >= LON0 - 1e-6 and s >= LAT0 - 1e-6 and e <= LON0 + 0.005 and n <= LAT0 + 0.005
    lo, hi = c["extent"]["temporal"]["interval"][0]
    assert lo.startswith("2026-03-02T00:00:00") and hi is not None
    rels = {link["rel"] for link in c["links"]}
    assert {"self", "items"} <= rels


def test_paging_links_and_counts(client, tokens) -> None:
    seen: list[str] = []
    url = "/collections/events/items?limit=60"
    pages = 0
    while url:
        r = get(client, tokens, url)
        assert r.status_code == 200 and r.headers["content-type"] == GEOJSON
        body = r.json()
        assert body["type"] == "FeatureCollection"
        assert body["numberMatched"] == N_EVENTS
        assert body["numberReturned"] == len(body["features"])
        seen += [f["id"] for f in body["features"]]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        prev = [link for link in body["links"] if link["rel"] == "prev"]
        assert bool(prev) == (pages > 0)
        url = nxt[0].replace("http://testserver", "") if nxt else None
        pages += 1
    assert pages == 5 and len(seen) == N_EVENTS == len(set(seen))
    assert seen == sorted(seen)


def test_limit_is_capped(client, tokens, api_settings) -> None:
    r = get(client, tokens, f"/collections/events/items?limit={api_settings.api.max_page_size + 5000}")
    assert r.status_code == 200
    nxt = [link["href"] for link in r.json()["links"] if link["rel"] == "self"][0]
    assert parse_qs(urlparse(nxt).query)["limit"] == [str(api_settings.api.max_page_size)]
    assert get(client, tokens, "/collections/events/items?limit=0").status_code == 422


def test_feature_geometry_crs84(client, tokens) -> None:
    f = get(client, tokens, "/collections/events/items/E0000001").json()
    assert f["type"] == "Feature" and f["id"] == "E0000001"
    lon, lat = f["geometry"]["coordinates"]
    assert abs(lon - (LON0 + 0.0001)) < 1e-7 and abs(lat - (LAT0 + 0.0001)) < 1e-7
    assert f["properties"]["category"] == "city_appearance"
    assert get(client, tokens, "/collections/events/items/NOPE").status_code == 404


def test_response_crs_parameter(client, tokens) -> None:
    # GDAL's OAPIF driver asks for crs=<CRS84 URI> once a collection lists it (regression: it got a 400)
    crs84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    for path in ("/collections/events/items", "/collections/events/items/E0000001"):
        r = get(client, tokens, path, params={"crs": crs84, "limit": 5})
        assert r.status_code == 200, r.text
        assert r.headers["content-crs"] == f"<{crs84}>"
        r = get(client, tokens, path, params={"crs": "http://www.opengis.net/def/crs/EPSG/0/4548"})
        assert r.status_code == 400 and "crs" in r.json()["detail"]


def test_bbox(client, tokens) -> None:
    # events lie on a 20 x 13 lattice, 0.0002 deg apart, first at +0.0001; take the first 5 x 2
    bbox = f"{LON0},{LAT0},{LON0 + 0.00095},{LAT0 + 0.00035}"
    body = get(client, tokens, f"/collections/events/items?bbox={bbox}&limit=100").json()
    assert body["numberMatched"] == 10
    for f in body["features"]:
        lon, lat = f["geometry"]["coordinates"]
        assert LON0 <= lon <= LON0 + 0.00095 and LAT0 <= lat <= LAT0 + 0.00035
    bad = get(client, tokens, "/collections/events/items?bbox=1,2,3")
    assert bad.status_code == 400 and bad.json()["status"] == 400
    huge = get(client, tokens, "/collections/events/items?bbox=100,20,130,45")
    assert huge.status_code == 400 and "km²" in huge.json()["detail"]
    crs = get(client, tokens, "/collections/events/items?bbox=1,2,3,4&bbox-crs=EPSG:3857")
    assert crs.status_code == 400


@pytest.mark.parametrize(
    "dt, expected",
    [
        ("2026-03-02T05:00:00Z", 1),  # an instant: the event reported at 05:00
        ("2026-03-02T00:00:00Z/2026-03-02T09:30:00Z", 10),  # closed interval
        ("../2026-03-02T02:00:00Z", 3),  # open start
        (f"2026-03-02T00:00:00Z/..", N_EVENTS),  # noqa: F541 - open end
        ("2026-03-11T00:00:00+08:00/", 250 - (9 * 24 - 8)),  # open end, offset
        ("2026-03-02", 24),  # a whole day
    ],
)
def test_datetime(client, tokens, dt, expected) -> None:
    r = get(client, tokens, "/collections/events/items", params={"datetime": dt, "limit": 1})
    assert r.status_code == 200, r.text
    assert r.json()["numberMatched"] == expected


def test_datetime_errors(client, tokens) -> None:
    assert get(client, tokens, "/collections/events/items?datetime=yesterday").status_code == 400
    assert get(client, tokens, "/collections/events/items?datetime=../..").status_code == 400
    assert get(client, tokens, "/collections/buildings/items?datetime=2026-03-02").status_code == 400


T = datetime.fromisoformat
BOX = (LON0, LAT0, LON0 + 0.00095, LAT0 + 0.00035)


def _in_box(e: dict) -> bool:
    return BOX[0] <= e["lon"] <= BOX[2] and BOX[1] <= e["lat"] <= BOX[3]


@pytest.mark.parametrize(
    "cql, pred",
    [
        ("category = 'sanitation'", lambda e: e["category"] == "sanitation"),
        (
            "category = 'sanitation' AND priority = 'C'",
            lambda e: e["category"] == "sanitation" and e["priority"] == "C",
        ),
        ("priority IN ('A', 'B')", lambda e: e["priority"] in "AB"),
        ("NOT priority IN ('A', 'B')", lambda e: e["priority"] not in "AB"),
        ("description LIKE '事件 1%'", lambda e: e["description"].startswith("事件 1")),
        (
            "reported_at < TIMESTAMP('2026-03-02T03:00:00Z')",
            lambda e: e["reported_at"] < T("2026-03-02T03:00:00+00:00"),
        ),
        (
            "reported_at >= TIMESTAMP('2026-03-11T00:00:00Z') OR category = 'dispute'",
            lambda e: e["reported_at"] >= T("2026-03-11T00:00:00+00:00") or e["category"] == "dispute",
        ),
        (
            "T_BEFORE(reported_at, TIMESTAMP('2026-03-02T02:00:00Z'))",
            lambda e: e["reported_at"] < T("2026-03-02T02:00:00+00:00"),
        ),
        (
            "T_INTERSECTS(reported_at, INTERVAL('2026-03-02T00:00:00Z', '2026-03-02T04:00:00Z'))",
            lambda e: e["reported_at"] <= T("2026-03-02T04:00:00+00:00"),
        ),
        (
            f"S_INTERSECTS(geometry, POLYGON(({BOX[0]} {BOX[1]}, {BOX[2]} {BOX[1]}, {BOX[2]} {BOX[3]}, "
            f"{BOX[0]} {BOX[3]}, {BOX[0]} {BOX[1]})))",
            _in_box,
        ),
        (f"BBOX(geometry, {BOX[0]}, {BOX[1]}, {BOX[2]}, {BOX[3]})", _in_box),
        ("worker_id IS NULL", lambda e: True),
        ("CASEI(category) = casei('SANITATION')", lambda e: e["category"] == "sanitation"),
        ("reopened_count + 1 = 1", lambda e: True),
        ("priority BETWEEN 'A' AND 'B'", lambda e: e["priority"] in "AB"),
    ],
)
def test_cql2_filter(client, tokens, cql, pred) -> None:
    expected = sum(1 for e in event_rows() if pred(e))
    assert 0 < expected
    r = get(
        client,
        tokens,
        "/collections/events/items",
        params={"filter": cql, "filter-lang": "cql2-text", "limit": 1},
    )
    assert r.status_code == 200, r.text
    assert r.json()["numberMatched"] == expected, cql


def test_cql2_counts_match_sql(client, tokens, api_db_url) -> None:
    engine = sa.create_engine(api_db_url)
    with engine.connect() as conn:
        n = conn.execute(
            sa.text(
                "SELECT count(*) FROM events "
                "WHERE reported_at >= '2026-03-11T00:00:00Z' OR category = 'dispute'"
            )
        ).scalar_one()
    engine.dispose()
    r = get(
        client,
        tokens,
        "/collections/events/items",
        params={
            "filter": "reported_at >= TIMESTAMP('2026-03-11T00:00:00Z') OR category = 'dispute'",
            "limit": 1,
        },
    )
    assert r.json()["numberMatched"] == n


@pytest.mark.parametrize(
    "cql",
    [
        "nosuchfield = 1",
        "category = ",
        "category = 'x'; DROP TABLE events",
        "geom_4548 IS NULL",  # not a published property
        "reported_at > 'not a time'",
        "floors = 'abc'",
        "S_INTERSECTS(geometry, POLYGON((0 0, 1 0, 1 1, 0 0))) AND foo(category) = 1",
    ],
)
def test_cql2_rejects(client, tokens, cql) -> None:
    r = get(client, tokens, "/collections/events/items", params={"filter": cql})
    assert r.status_code == 400, (cql, r.text)
    assert r.json()["status"] == 400 and "Traceback" not in r.text


def test_filter_lang_and_geometry_caps(client, tokens, api_db_url, tiles_dir) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.api_support import make_settings

    r = get(client, tokens, "/collections/events/items", params={"filter": "x=1", "filter-lang": "cql2-json"})
    assert r.status_code == 400
    line = ", ".join(f"{LON0 + i * 1e-6} {LAT0}" for i in range(60))
    big = f"S_INTERSECTS(geometry, LINESTRING({line}))"
    with TestClient(create_app(make_settings(api_db_url, tiles_dir, max_geometry_vertices=50))) as small:
        r = get(small, tokens, "/collections/events/items", params={"filter": big})
    assert r.status_code == 400 and "too complex" in r.json()["detail"]


def test_sortby_properties_and_property_filter(client, tokens) -> None:
    body = get(client, tokens, "/collections/buildings/items?sortby=-height&limit=3").json()
    heights = [f["properties"]["height"] for f in body["features"]]
    assert heights == sorted(heights, reverse=True) and heights[0] == 10.0 + 3 * 19
    body = get(client, tokens, "/collections/buildings/items?sortby=%2Bheight&limit=2").json()
    assert [f["properties"]["height"] for f in body["features"]] == [10.0, 13.0]
    body = get(client, tokens, "/collections/buildings/items?properties=name,height&limit=2").json()
    assert set(body["features"][0]["properties"]) == {"name", "height"}
    body = get(client, tokens, "/collections/buildings/items?use=school").json()
    assert body["numberMatched"] == 4 and all(f["properties"]["use"] == "school" for f in body["features"])
    body = get(client, tokens, "/collections/buildings/items?floors=5").json()
    assert body["numberMatched"] == 1 and body["features"][0]["id"] == "B000003"
    assert get(client, tokens, "/collections/buildings/items?floors=five").status_code == 400
    assert get(client, tokens, "/collections/buildings/items?colour=red").status_code == 400
    assert get(client, tokens, "/collections/buildings/items?sortby=colour").status_code == 400
    assert get(client, tokens, "/collections/buildings/items?properties=colour").status_code == 400


def test_queryables(client, tokens) -> None:
    r = get(client, tokens, "/collections/events/queryables")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/schema+json")
    props = r.json()["properties"]
    assert props["reported_at"]["format"] == "date-time" and props["priority"]["type"] == "string"
    assert "geometry" in props


def test_property_level_roles(client, tokens) -> None:
    anon = client.get("/collections/grid_cells/items/G001").json()["properties"]
    # who staffs a cell is for operations roles only (gis.policy READ_STAFF, issue 17)
    assert not {"staff_phone", "staff_id", "staff_name"} & set(anon)
    op = get(client, tokens, "/collections/grid_cells/items/G001", "operator").json()["properties"]
    assert op["staff_phone"] == "13800000001" and op["staff_name"] == "张三"
    r = client.get("/collections/grid_cells/items", params={"filter": "staff_phone = '13800000001'"})
    assert r.status_code == 400  # cannot probe hidden properties through filters either


def test_population_suppressed_and_privileged_audited(client, tokens, api_db_url) -> None:
    planner = get(client, tokens, "/collections/population_by_building/items/B000002", "planner").json()
    assert planner["properties"]["total"] is None and "total" in planner["properties"]["suppressed"]
    # B000001 (12) is hidden too: its grid's total minus it would give B000002's 3 (complementary
    # suppression, migration 0006_privacy; tests/security/test_api_abuse.py tries every subtraction)
    big = get(client, tokens, "/collections/population_by_building/items/B000001", "planner").json()
    assert big["properties"]["total"] is None and "total" in big["properties"]["suppressed"]
    engine = sa.create_engine(api_db_url)
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()
    priv = get(client, tokens, "/collections/population_by_building/items/B000002", "privileged").json()
    assert priv["properties"]["total"] == 3 and priv["properties"]["suppressed"] == []
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT user_name, action, target FROM audit_log ORDER BY id DESC LIMIT 1")
        ).all()
        after = conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()
    engine.dispose()
    assert after == before + 1
    assert rows[0] == ("t-privileged", "population.read_unsuppressed", "population_by_building")
    assert get(client, tokens, "/collections/population_by_building/items", "viewer").status_code == 403


def test_patrol_tracks_integer_ids(client, tokens) -> None:
    body = get(client, tokens, "/collections/patrol_tracks/items", "operator").json()
    assert body["numberMatched"] == 1
    fid = body["features"][0]["id"]
    assert isinstance(fid, int)
    assert get(client, tokens, f"/collections/patrol_tracks/items/{fid}", "operator").status_code == 200
    assert get(client, tokens, "/collections/patrol_tracks/items/abc", "operator").status_code == 404
    r = get(client, tokens, "/collections/patrol_tracks/items?datetime=2026-03-02T04:00:00Z", "operator")
    assert r.json()["numberMatched"] == 1  # inside the shift interval


def test_unknown_collection_and_format(client, tokens) -> None:
    r = get(client, tokens, "/collections/nope/items")
    assert r.status_code == 404 and r.json() == {
        "detail": "no collection 'nope'; see /collections",
        "status": 404,
    }
    assert get(client, tokens, "/collections/events/items?f=xml").status_code == 400
