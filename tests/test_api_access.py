"""/analytics/access* over HTTP: who may (planner and up) and who may not (viewer, device,
anonymous), answers valid against their response models, unpublished speeds/minutes refused,
counts suppressed for the small groups of the API test district, the facilities collection."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from pydantic import TypeAdapter

from api import access_models as m
from tests.api_support import LAT0, LON0, auth

ROUTES = {
    "/analytics/access?kind=clinic&minutes=10": m.Access,
    "/analytics/access/sites?kind=clinic&minutes=5&n=3": list[m.Site],
    "/analytics/access/isochrones?kind=clinic&speed=0.8": m.IsochroneCollection,
}


@pytest.fixture(scope="module")
def graph(api_db_url: str) -> None:
    """Roads through the API district (a cross) and one clinic near its south-west corner."""
    engine = sa.create_engine(api_db_url)
    with engine.begin() as c:
        for rid, a, b in (("RA1", (0.0, 0.0005), (0.003, 0.0005)), ("RA2", (0.0015, 0.0), (0.0015, 0.003))):
            c.execute(sa.text("INSERT INTO roads (id, class, bridge, geom) VALUES (:id, 'residential', false, "
                              "ST_GeomFromText(:wkt, 4490))"),
                      {"id": rid, "wkt": f"MULTILINESTRING(({LON0 + a[0]} {LAT0 + a[1]},{LON0 + b[0]} {LAT0 + b[1]}))"})
        c.execute(sa.text("SELECT road_graph_rebuild()"))
        c.execute(sa.text("INSERT INTO facilities (id, kind, name, geom) VALUES ('FC001', 'clinic', '卫生站', "
                          "ST_SetSRID(ST_MakePoint(:x, :y), 4490))"), {"x": LON0 + 0.0002, "y": LAT0 + 0.0006})
    engine.dispose()


@pytest.mark.usefixtures("graph")
@pytest.mark.parametrize("role", ["admin", "operator", "planner", "viewer", "device", None])
def test_roles(client, tokens, role: str | None) -> None:  # noqa: ANN001
    for url, model in ROUTES.items():
        r = client.get(url, headers=auth(tokens, role))
        if role is None:
            assert r.status_code == 401, (url, r.text)
        elif role in ("viewer", "device"):
            assert r.status_code == 403, (url, role, r.text)
        else:
            assert r.status_code == 200, (url, role, r.text)
            TypeAdapter(model).validate_python(r.json(), strict=False)


@pytest.mark.usefixtures("graph")
def test_answers_and_suppression(client, tokens) -> None:  # noqa: ANN001
    h = auth(tokens, "planner")
    body = client.get("/analytics/access?kind=clinic&minutes=5&speed=0.8", headers=h).json()
    assert body["kind"] == "clinic" and body["speed"] == 0.8 and body["minutes"] == 5
    assert body["buildings"] and all(b["facility_id"] in ("FC001", None) for b in body["buildings"])
    # the district has 15 people (12 + 3): every group's small counts are withheld
    rows = {(r["community_id"], r["grp"]): r for r in body["communities"]}
    for r in rows.values():
        for k in ("within_5", "within_10", "within_15"):
            assert r[k] is None or r[k] == 0 or r[k] >= 5, r
            assert r[k] is None or r["residents"] is None or r["residents"] - r[k] in (0, *range(5, 10**6)), r
        assert r["grp"] != "disabled" or r["residents"] is None
    # a privileged user gets the same aggregates: there is no person-level variant
    assert client.get("/analytics/access?kind=clinic&minutes=5&speed=0.8",
                      headers=auth(tokens, "privileged")).json()["communities"] == body["communities"]
    fc = client.get("/analytics/access/isochrones?kind=clinic", headers=h).json()
    assert fc["features"] and {f["properties"]["band"] for f in fc["features"]} <= {5, 10, 15, None}


@pytest.mark.usefixtures("graph")
@pytest.mark.parametrize("query", ["kind=clinic&speed=1.0", "kind=clinic&minutes=7", "kind=spaceport",
                                   "kind=clinic&community=" + "x" * 41])
def test_unpublished_parameters_refused(client, tokens, query: str) -> None:  # noqa: ANN001
    for path in ("/analytics/access", "/analytics/access/sites"):
        if "community" in query and path.endswith("sites"):
            continue
        r = client.get(f"{path}?{query}", headers=auth(tokens, "planner"))
        assert r.status_code in (400, 422), (path, query, r.text)


@pytest.mark.usefixtures("graph")
def test_facilities_collection(client, tokens) -> None:  # noqa: ANN001
    r = client.get("/collections/facilities/items", headers=auth(tokens, "viewer"))
    assert r.status_code == 200, r.text
    feats = r.json()["features"]
    assert [f["id"] for f in feats] == ["FC001"] and feats[0]["properties"]["kind"] == "clinic"
    assert client.get("/collections/facilities/items", headers=auth(tokens, "device")).status_code in (401, 403)


def test_viewer_serves_the_access_tool(client) -> None:  # noqa: ANN001
    index = client.get("/?mode=viewer", headers={"Accept": "text/html"}).text
    assert 'data-tool="access"' in index and 'data-roles="planner operator admin"' in index
    js = client.get("/viewer/js/access.js")
    assert js.status_code == 200
    for route in ("/analytics/access", "/analytics/access/sites", "/analytics/access/isochrones"):
        assert f'"{route}"' in js.text
    assert "innerHTML" not in js.text  # text goes in through textContent only (CSP, XSS)
