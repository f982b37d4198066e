"""The civil-affairs viewer (issue 16) in headless Debian Chromium under the real CSP, on the full
sample: its database (every layer loaded) and its buildings and terrain tiles built by the real
`onemap tiles build` (both made once per session, tests/fixtures/sample.py). A planner logs in
through the form and sees, each checked on screen:

- the facilities layer (one icon per facility of the OGC collection);
- the buildings coloured by walking time (the access tool): the tileset's style is the access
  style of the chosen kind, and every loaded building feature has the colour of its band in
  /analytics/access;
- the targets panel (one card per target of the sample targets file, statuses = the API) and the
  communities coloured by /analytics/targets communities[].status;
- the camera-gap layer: every viewshed (the high-altitude lookouts' too), unseen hot spots,
  candidate sites;
- the grid cells coloured by population after a metric change (a rebuild: Cesium once dropped
  the fills of entities re-added under their old ids) and the geofences;
- the big screen's targets panel.

Every polygon and overlay layer of the planner view (render-on-demand) is checked *drawn*: with the
camera straight down, the pixels the app itself rendered at points inside the layer's polygons (or
on its lines) are compared with the same pixels re-rendered with the layer hidden — they must have
moved towards the layer's colour (for the target communities: to the blend of the status colour
at its alpha). Screenshots and the probe results go to test-artifacts/ (gitignored).

ONEMAP_TEST_CIVIL_SERVER=http://host:port reuses a running server on the full sample instead (its
database must hold the account civil-planner with PASSWORD; ONEMAP_TEST_SAMPLE_DIR its delivery).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import httpx
import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from pyproj import Transformer

from gis import targets
from tests.api_support import make_settings, running_server
from tests.browser.pages import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO

pytestmark = [pytest.mark.browser, pytest.mark.timeout(5400)]

STEP_MS = 900_000
PASSWORD = "civil browser password"
AS_OF = "2026-10-15T16:00:00Z"  # before the targets' deadline (2026-10-31), Q3+Q4 surveys in
STATUSES = {"met", "on_track", "off_track", "missed", "no_data"}
STATUS_COLORS = {"on_track": "#66bd63", "off_track": "#f46d43", "no_data": "#9e9e9e"}
#: access.js BANDS: minutes → colour, grey beyond 15 min or unreachable
BANDS = [(5, "#1a9850"), (10, "#fee08b"), (15, "#f46d43")]
FAR = "#9e9e9e"
#: metres straight above the district centre for the pixel checks
TOP_DOWN_M = 3200.0
TO_4548 = Transformer.from_crs("EPSG:4490", "EPSG:4548", always_xy=True)
TO_4490 = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True)
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(
    `${e.effectiveDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`));
"""

if not Path(CHROMIUM).exists():  # pragma: no cover - the Makefile installs it for `make test`
    pytest.skip(f"{CHROMIUM} not installed (make setup-test installs it)", allow_module_level=True)


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def civil_tiles(sample_tiles: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's sample tiles (tests/fixtures/sample.py) cut to buildings and terrain, the
    layers these checks need (every other tileset would only slow software rendering): a copy,
    since the API refuses links out of its tiles folder."""
    out = tmp_path_factory.mktemp("civil-tiles")
    for name in ("buildings", "terrain"):
        shutil.copytree(sample_tiles / name, out / name)
    catalog = json.loads((sample_tiles / "index.json").read_text())
    catalog["layers"] = [e for e in catalog["layers"] if e["name"] in ("buildings", "terrain")]
    (out / "index.json").write_text(json.dumps(catalog))
    return out


@pytest.fixture(scope="module")
def civil_db(full_sample: tuple[str, object]) -> str:
    """The session's full-sample database (tests/fixtures/gis.py) with the planner account."""
    from gis.accounts import add_user

    url = full_sample[0]
    engine = sa.create_engine(url)
    try:
        add_user(engine, "civil-planner", "planner", password=PASSWORD, ttl_s=False)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    reuse = os.environ.get("ONEMAP_TEST_CIVIL_SERVER")
    if reuse:
        yield reuse.rstrip("/")
        return
    db, tiles = request.getfixturevalue("civil_db"), request.getfixturevalue("civil_tiles")
    with running_server(make_settings(db, tiles)) as base:
        yield base


@pytest.fixture(scope="module")
def buildings_4548(sample_dir: Path) -> shapely.Geometry:
    """Every building footprint of the delivery (EPSG:4548), grown by 12 m: pixel probes keep off
    roofs and walls."""
    gdf = gpd.read_file(sample_dir / "clean" / "buildings.gpkg", columns=["id"])
    return shapely.union_all(shapely.buffer(gdf.geometry.values, 12.0))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=120_000)
        yield b
        b.close()


@pytest.fixture(scope="module")
def planner(server: str, browser) -> Iterator[object]:  # noqa: ANN001 - playwright Page
    """One signed-in planner page for the module (a page load of the full sample costs about a
    minute in software GL): rendered at half resolution (`scale=0.5`), its opening view and
    layers recorded so each test starts from them (:func:`planner_page`). Closing it fails on any
    CSP violation or page error."""
    context, page = _login(browser, server, f"/?lang=en&scale=0.5&as_of={AS_OF}")
    page.evaluate(SAVE_HOME_JS)
    try:
        yield page
    finally:
        _close(context, page)


@pytest.fixture()
def planner_page(planner) -> Iterator[object]:  # noqa: ANN001
    """The module's planner page back at its opening view, tools closed and layers as at sign-in;
    after the test, no page error."""
    planner.evaluate(RESET_JS)
    _settled(planner)
    yield planner
    assert planner.evaluate("onemap.errors") == []


# ------------------------------------------------------------------------------------------ page helpers
#: Remember the opening view and the layers shown at sign-in.
SAVE_HOME_JS = """() => {
    const cam = onemap.viewer.camera;
    window.__home = {destination: cam.positionWC.clone(),
                     orientation: {direction: cam.directionWC.clone(), up: cam.upWC.clone()}};
    window.__layersAtStart = [...document.querySelectorAll('input[data-layer]')]
        .filter((el) => el.checked).map((el) => el.dataset.layer);
}"""

#: Close every open tool, show exactly the layers of sign-in, go back to the opening view.
RESET_JS = """() => {
    for (const b of document.querySelectorAll('[data-tool][aria-pressed=true]')) {
        if (b.dataset.tool !== 'layers') b.click();
    }
    for (const el of document.querySelectorAll('input[data-layer]')) {
        if (el.checked !== window.__layersAtStart.includes(el.dataset.layer)) el.click();
    }
    onemap.viewer.camera.cancelFlight();
    onemap.viewer.camera.setView(window.__home);
    onemap.viewer.scene.requestRender();
}"""


def _wait(page, js: str, timeout_ms: int = STEP_MS):  # noqa: ANN001, ANN202
    """Poll ``js`` through evaluate (the CSP would refuse wait_for_function's eval)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = page.evaluate(js)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{js[:160]!r} still falsy")
        page.wait_for_timeout(500)


def _login(browser, base: str, path: str):  # noqa: ANN001, ANN202
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    page.goto(base + path, wait_until="commit")
    # the HTML already says role=anonymous: wait until auth.js has wired the sign-in controls
    _wait(page, "() => document.body && document.body.dataset.auth === 'ready'"
                " && document.body.dataset.role === 'anonymous'")
    if not page.evaluate("document.getElementById('signin').open"):
        page.click("#signin-open")
    page.fill("#signin-username", "civil-planner")
    page.fill("#signin-password", PASSWORD)
    page.click("#signin-form button[type=submit]")
    _wait(page, "() => document.body.dataset.role === 'planner'")
    _wait(page, "() => ['true', 'error'].includes(document.body.dataset.ready)")
    assert page.evaluate("document.body.dataset.ready") == "true", page.evaluate("onemap.errors")
    return context, page


def _shot(page, name: str) -> None:  # noqa: ANN001
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("onemap.pauseRendering(); onemap.viewer.scene.requestRender(); onemap.viewer.render()")
    try:
        page.screenshot(path=str(ARTIFACTS / name), timeout=STEP_MS)
    finally:
        page.evaluate("onemap.resumeRendering()")


def _close(context, page) -> None:  # noqa: ANN001
    violations = page.evaluate("window.__cspViolations || []")
    errors = page.evaluate("onemap.errors")
    context.close()
    assert violations == [], violations[:10]
    assert errors == [], errors[:10]


def _token(page) -> str:  # noqa: ANN001
    return str(page.evaluate("sessionStorage.getItem('onemap.session')"))


def _api(base: str, page, path: str, **params: object) -> dict | list:  # noqa: ANN001
    r = httpx.get(f"{base}{path}", params=params, headers={"Authorization": f"Bearer {_token(page)}"},
                  timeout=600)
    assert r.status_code == 200, (path, r.text[:500])
    return r.json()


def _settled(page) -> None:  # noqa: ANN001
    """The app's own render loop has drawn everything it was building (render.js)."""
    page.evaluate("onemap.whenSettled()")


# ------------------------------------------------------------------------------------------ pixel probes
#: Straight-down camera over the district centre at TOP_DOWN_M above the ground.
TOP_DOWN_JS = """(h) => {
    onemap.viewer.camera.cancelFlight();  // the app's opening flight must not carry the camera off
    const [lon, lat] = onemap.district.center;
    const ground = onemap.viewer.scene.globe.getHeight(Cesium.Cartographic.fromDegrees(lon, lat)) ?? 0;
    onemap.viewer.camera.setView({destination: Cesium.Cartesian3.fromDegrees(lon, lat, ground + h),
        orientation: {heading: 0, pitch: -Cesium.Math.PI_OVER_TWO, roll: 0}});
    onemap.viewer.scene.requestRender();
}"""

#: For items [{lon, lat, id, kind: polygon|polyline}] of data source `ds`: the 3x3 pixels the app
#: last drew there (`a`, read without rendering), the same re-rendered with the data source hidden
#: (`b`), and the colour of the item's entity (`fill`: r, g, b 0-255, alpha 0-1). Null `a` when
#: the point is off screen.
PROBE_JS = """({ds, items}) => {
    const viewer = onemap.viewer, scene = viewer.scene, canvas = scene.canvas;
    const source = viewer.dataSources.getByName(ds)[0];
    const sx = canvas.width / canvas.clientWidth, sy = canvas.height / canvas.clientHeight;
    const wins = items.map((it) => {
        const c = Cesium.Cartographic.fromDegrees(it.lon, it.lat);
        const hgt = scene.globe.getHeight(c) ?? 0;
        const w = Cesium.SceneTransforms.worldToWindowCoordinates(scene,
            Cesium.Cartesian3.fromDegrees(it.lon, it.lat, hgt));
        if (!w) return null;
        const x = Math.round(w.x * sx), y = Math.round(w.y * sy);
        return x < 2 || y < 2 || x > canvas.width - 3 || y > canvas.height - 3 ? null : [x, y];
    });
    const read = () => {
        const copy = document.createElement('canvas');
        copy.width = canvas.width; copy.height = canvas.height;
        const g = copy.getContext('2d', {willReadFrequently: true});
        g.drawImage(canvas, 0, 0);
        return wins.map((w) => {
            if (!w) return null;
            const d = g.getImageData(w[0] - 1, w[1] - 1, 3, 3).data;
            const out = [];
            for (let i = 0; i < 9; i++) out.push([d[4 * i], d[4 * i + 1], d[4 * i + 2]]);
            return out;
        });
    };
    const now = viewer.clock.currentTime;
    const fills = items.map((it) => {
        for (const e of source.entities.values) {
            if (String(e.onemap?.id) !== String(it.id) || !e[it.kind]) continue;
            const c = e[it.kind].material.color.getValue(now);
            return [c.red * 255, c.green * 255, c.blue * 255, c.alpha];
        }
        return null;
    });
    onemap.pauseRendering();
    try {
        const a = read();  // what the app drew, untouched
        source.show = false;
        scene.requestRender(); viewer.render();
        const b = read();
        source.show = true;
        scene.requestRender(); viewer.render();
        return items.map((it, i) => ({...it, a: a[i], b: b[i], fill: fills[i]}));
    } finally {
        onemap.resumeRendering();
    }
}"""


#: The ground the camera sees (lon/lat degrees), for probe points that are on screen by construction.
VIEW_JS = """() => {
    const r = onemap.viewer.camera.computeViewRectangle();
    return r && [r.west, r.south, r.east, r.north].map(Cesium.Math.toDegrees);
}"""


def _view_4548(page, margin: float = 0.05) -> shapely.Geometry:  # noqa: ANN001
    """The camera's ground rectangle (EPSG:4548), less ``margin`` of its size on each side."""
    rect = page.evaluate(VIEW_JS)
    assert rect, "the camera sees no ground"
    west, south, east, north = rect
    dx, dy = (east - west) * margin, (north - south) * margin
    return _lonlat_to_4548(shapely.box(west + dx, south + dy, east - dx, north - dy).segmentize(0.001))


def _moved_towards(a: list[int], b: list[int], fill: list[float]) -> bool:
    """Pixel a (layer shown) moved from b (layer hidden) towards the layer's colour by a good part
    of what its alpha makes (at least 40 %, and 5 levels)."""
    step = [x - y for x, y in zip(a, b, strict=True)]
    gap = [f - y for f, y in zip(fill[:3], b, strict=True)]
    want = fill[3] * max(abs(g) for g in gap)
    return max(abs(s) for s in step) >= max(5.0, 0.4 * want) and sum(s * g for s, g in zip(step, gap, strict=True)) > 0


def _blend_matches(a: list[int], b: list[int], fill: list[float], tol: float = 40.0) -> bool:
    """Pixel a is the layer colour over b at the layer's alpha."""
    return all(abs(x - (fill[3] * f + (1 - fill[3]) * y)) <= tol for x, f, y in zip(a, fill[:3], b, strict=True))


def _probe(page, ds: str, items: list[dict], name: str) -> list[dict]:  # noqa: ANN001
    """Run PROBE_JS and keep the on-screen results; each gets `drawn` (some pixel of its 3x3 moved
    towards the colour) and `blend` (some pixel is the blend); written to test-artifacts/."""
    raw = page.evaluate(PROBE_JS, {"ds": ds, "items": items})
    out = [r for r in raw if r["a"] and r["fill"]]
    print(f"probe {name}: {len(raw)} points, {sum(not r['a'] for r in raw)} off screen, "  # shown on failure
          f"{sum(not r['fill'] for r in raw)} without an entity of that id in {ds!r}")
    for r in out:
        pairs = list(zip(r["a"], r["b"], strict=True))
        r["drawn"] = any(_moved_towards(a, b, r["fill"]) for a, b in pairs)
        r["blend"] = any(_blend_matches(a, b, r["fill"]) and a != b for a, b in pairs)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"civil-probe-{name}.json").write_text(json.dumps(out, indent=1))
    return out


def _assert_drawn(results: list[dict], what: str, at_least: int = 8, share: float = 0.8) -> None:
    drawn = sum(r["drawn"] for r in results)
    assert len(results) >= at_least, f"{what}: only {len(results)} probe points on screen"
    assert drawn >= share * len(results), f"{what}: drawn at {drawn} of {len(results)} points"


def _lonlat_to_4548(g: shapely.Geometry) -> shapely.Geometry:
    return shapely.transform(g, lambda xy: np.column_stack(TO_4548.transform(xy[:, 0], xy[:, 1])))


def _inner_points(features: list[dict], avoid: shapely.Geometry, *, per: int, inset_m: float,
                  within: shapely.Geometry, kind: str = "polygon", seed: int = 16) -> list[dict]:
    """Up to ``per`` random points (lon/lat) inside each polygon feature, ``inset_m`` from its
    edges, inside ``within`` (the view, :func:`_view_4548`) and outside ``avoid`` (EPSG:4548)."""
    rng = random.Random(seed)
    out = []
    for f in features:
        if not f.get("geometry"):
            continue
        g = _lonlat_to_4548(shapely.geometry.shape(f["geometry"])).buffer(-inset_m)
        g = g.intersection(within).difference(avoid)
        if g.is_empty or g.area < 50:
            continue
        x0, y0, x1, y1 = g.bounds
        got = 0
        for _ in range(400):
            x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
            if g.contains(shapely.Point(x, y)):
                lon, lat = TO_4490.transform(x, y)
                out.append({"lon": lon, "lat": lat, "id": f["id"], "kind": kind})
                got += 1
                if got >= per:
                    break
    return out


def _band_color(minutes: float | None) -> str:
    if minutes is None:
        return FAR
    return next((c for m, c in BANDS if minutes <= m), FAR)


# ------------------------------------------------------------------------------------------ tests
def test_targets_panel_and_community_colouring(server: str, planner_page, buildings_4548) -> None:  # noqa: ANN001
    page = planner_page
    doc = _api(server, page, "/analytics/targets", as_of=AS_OF)
    page.click("[data-tool=targets]")
    _wait(page, "() => document.querySelectorAll('#targets-list > li').length > 0")
    cards = page.evaluate("""() => [...document.querySelectorAll('#targets-list > li')].map((li) => ({
        id: li.dataset.target, status: li.dataset.status,
        badge: li.querySelector('.target-status').textContent,
        value: li.querySelector('.target-value').textContent,
        dots: [...li.querySelectorAll('.target-dots li')].map((d) => d.dataset.status)}))""")
    assert [c["id"] for c in cards] == [t["id"] for t in doc["targets"]]
    assert len(cards) == len(targets.load_targets(REPO / "data/targets/jiefang.yaml"))
    for card, target in zip(cards, doc["targets"], strict=True):
        assert card["status"] in STATUSES and card["badge"] and card["value"]
        if len(target["results"]) > 1:
            assert card["dots"] == [r["status"] for r in target["results"]]
    security = next(c for c in cards if c["id"] == "security_down_30")
    assert {"on_track", "met"} & set(security["dots"]) and {"off_track"} & set(security["dots"])
    # the map: every community coloured by its status in /analytics/targets
    want = {c["community_id"]: c["status"] for c in doc["communities"]}
    assert {"on_track", "off_track"} <= set(want.values())
    counts = _wait(page, "() => document.body.dataset.targetCommunities")
    expect = ",".join(f"{k}:{n}" for k, n in sorted(
        {s: list(want.values()).count(s) for s in set(want.values())}.items()))
    assert counts == expect
    got = page.evaluate("""() => {
        const ds = onemap.viewer.dataSources.getByName('target-communities')[0];
        const out = {};
        for (const e of ds.entities.values) {
            if (!e.polygon) continue;
            const c = e.polygon.material.color.getValue(onemap.viewer.clock.currentTime);
            out[e.onemap.id] = c.toCssHexString().slice(0, 7);
        }
        return out;
    }""")
    assert got == {cid: STATUS_COLORS[s] for cid, s in want.items()}
    assert page.evaluate("document.querySelector('[data-layer=targets]').checked")
    # drawn on screen: the status colour at its alpha over the ground, inside every community
    page.evaluate(TOP_DOWN_JS, TOP_DOWN_M)
    _settled(page)
    _wait(page, "() => document.body.dataset.targetCommunitiesDrawn === 'true'")
    fc = _api(server, page, "/collections/communities/items", limit=500)
    labels = shapely.union_all([_lonlat_to_4548(shapely.Point(lon, lat)).buffer(90) for lon, lat in page.evaluate(
        "onemap.viewer.dataSources.getByName('target-communities')[0].entities.values"
        ".filter((e) => e.label).map((e) => { const c = Cesium.Cartographic.fromCartesian("
        "e.position.getValue(onemap.viewer.clock.currentTime)); return [Cesium.Math.toDegrees(c.longitude),"
        " Cesium.Math.toDegrees(c.latitude)]; })")])
    probes = _probe(page, "target-communities",
                    _inner_points(fc["features"], buildings_4548 | labels, per=3, inset_m=15,
                                  within=_view_4548(page)), "targets")
    _assert_drawn(probes, "communities by target status", at_least=20)
    assert sum(r["blend"] for r in probes) >= 0.7 * len(probes), "status colours not blended as drawn"
    assert len({r["id"] for r in probes if r["drawn"]}) >= 0.8 * len(want)
    _shot(page, "civil-targets.png")


def test_camera_gap_layer(server: str, planner_page, buildings_4548) -> None:  # noqa: ANN001
    page = planner_page
    page.check("[data-layer=cameraGaps]")
    state = _wait(page, "() => { const s = document.body.dataset.cameraGaps || ''; "
                        "return s && !s.startsWith('loading') ? s : null; }")
    assert not state.startswith("error"), state
    parts = {k: int(v) for k, v in (p.split(":") for p in state.split(","))}
    viewsheds = _api(server, page, "/analytics/camera-viewsheds")["features"]
    high = [f for f in viewsheds if f["properties"]["kind"] == "high_altitude"]
    # every camera's viewshed is drawn, the high-altitude lookouts' included
    assert parts["viewsheds"] == len(viewsheds) > 100 and parts["high"] == len(high) == 2
    assert parts["sites"] >= 1
    kinds = page.evaluate("""() => {
        const ds = onemap.viewer.dataSources.getByName('camera-gaps')[0];
        const out = {};
        for (const e of ds.entities.values) out[e.onemap.kind] = (out[e.onemap.kind] || 0) + 1;
        return out;
    }""")
    assert kinds["viewshed"] >= parts["viewsheds"] and kinds["camera_site"] == parts["sites"]
    assert kinds.get("unseen_hotspot", 0) >= parts["hotspots"]
    drawn_ids = set(page.evaluate("[...new Set(onemap.viewer.dataSources.getByName('camera-gaps')[0]"
                                  ".entities.values.filter((e) => e.onemap.kind === 'viewshed')"
                                  ".map((e) => e.onemap.id))]"))
    assert {f["id"] for f in high} <= drawn_ids
    page.evaluate(TOP_DOWN_JS, TOP_DOWN_M)
    _settled(page)
    assert _wait(page, "() => document.body.dataset.cameraGapsDrawn") == "true"
    street = [f for f in viewsheds if f["properties"]["kind"] == "street"]
    high_area = shapely.union_all([_lonlat_to_4548(shapely.geometry.shape(f["geometry"])) for f in high])
    street_area = shapely.union_all([_lonlat_to_4548(shapely.geometry.shape(f["geometry"])) for f in street])
    view = _view_4548(page)
    probes = _probe(page, "camera-gaps", _inner_points(street, buildings_4548, per=1, inset_m=2, within=view),
                    "street-viewsheds")
    _assert_drawn(probes, "street camera viewsheds", at_least=30)
    cov = _api(server, page, "/analytics/camera-coverage", sites=5)
    cells = cov["uncovered_hotspots"]["features"]
    cell_area = shapely.union_all([_lonlat_to_4548(shapely.geometry.shape(f["geometry"])) for f in cells])
    if cells:
        probes = _probe(page, "camera-gaps", _inner_points(cells, buildings_4548, per=3, inset_m=10, within=view),
                        "hotspots")
        _assert_drawn(probes, "unseen hot spots", at_least=min(3, len(cells)), share=0.6)
    # the lookouts' faint fill alone, away from every street camera's view and hot spot
    avoid = buildings_4548 | street_area.buffer(5) | cell_area.buffer(5)
    probes = _probe(page, "camera-gaps", _inner_points(high, avoid, per=40, inset_m=10, within=view),
                    "high-viewsheds")
    _assert_drawn(probes, "high-altitude viewsheds", at_least=20)
    assert high_area.area > 1e6  # the lookouts see square kilometres past their roofs
    _shot(page, "civil-camera-gaps.png")
    (ARTIFACTS / "civil-camera-gaps.json").write_text(json.dumps({"state": state, "entities": kinds}))


def test_facilities_layer(server: str, planner_page) -> None:  # noqa: ANN001
    page = planner_page
    fc = _api(server, page, "/collections/facilities/items", limit=1000)
    assert fc["numberMatched"] == len(fc["features"]) >= 90
    page.check("[data-layer=facilities]")
    n = _wait(page, "() => { const ds = onemap.viewer.dataSources.getByName('facilities')[0];"
                    " return ds.entities.values.filter((e) => e.billboard).length; }")
    assert n == len(fc["features"])
    got = page.evaluate("() => Object.fromEntries(onemap.viewer.dataSources.getByName('facilities')[0]"
                        ".entities.values.map((e) => [e.onemap.id, e.onemap.properties.kind]))")
    assert got == {f["id"]: f["properties"]["kind"] for f in fc["features"]}
    page.evaluate(TOP_DOWN_JS, TOP_DOWN_M)
    _settled(page)
    # shown: a billboard collection with every icon loaded, drawn by the app's own frames
    icons = page.evaluate("""() => {
        const ds = onemap.viewer.dataSources.getByName('facilities')[0];
        const scene = onemap.viewer.scene, now = onemap.viewer.clock.currentTime;
        let onScreen = 0;
        for (const e of ds.entities.values) {
            const p = e.position.getValue(now);
            const c = Cesium.Cartographic.fromCartesian(p);
            const w = Cesium.SceneTransforms.worldToWindowCoordinates(scene,
                Cesium.Cartesian3.fromRadians(c.longitude, c.latitude, scene.globe.getHeight(c) ?? 0));
            const cw = scene.canvas.clientWidth, ch = scene.canvas.clientHeight;
            if (w && w.x > 0 && w.y > 0 && w.x < cw && w.y < ch) onScreen++;
        }
        return {shown: ds.show, onScreen};
    }""")
    assert icons["shown"] and icons["onScreen"] >= 0.8 * n, icons
    _shot(page, "civil-facilities.png")
    # the viewer queues its own analytics calls (api.js): eight fired at once all answer, and the
    # server, which runs two per token, never has to refuse one (the planner view once got 429s)
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if r.status == 429 else None)
    outcomes = page.evaluate("""async () => {
        const api = await import('/viewer/js/api.js');
        const all = await Promise.allSettled([...Array(8)].map(() => api.getJson('/analytics/events/sla',
            {group: 'category'})));
        return all.map((r) => r.status === 'fulfilled' ? 'ok' : String(r.reason?.status ?? r.reason));
    }""")
    assert outcomes == ["ok"] * 8 and refused == [], (outcomes, refused)


def test_access_building_colouring_and_isochrones(server: str, planner_page, buildings_4548) -> None:  # noqa: ANN001
    page = planner_page
    assert page.evaluate("!!onemap.tilesets.buildings"), "the buildings tileset did not load"
    page.click("[data-tool=access]")
    key = _wait(page, "() => document.body.dataset.accessBuildings")
    kind, speed, minutes, n = key.split(":")
    answer = _api(server, page, "/analytics/access", kind=kind, speed=speed, minutes=minutes, communities="false")
    times = {b["building_id"]: b["walk_min"] for b in answer["buildings"]}
    assert int(n) == len(times) > 3000
    style = page.evaluate("onemap.tilesets.buildings.style.onemap")
    assert style == {"access": True, "kind": kind, "speed": float(speed), "minutes": int(minutes),
                     "buildings": len(times)}
    _settled(page)
    # every loaded building feature has the colour of its walking-time band
    # (features of the tiles drawn this frame: a loaded parent tile keeps its old colours until shown)
    colours = page.evaluate("""() => {
        const drawn = new Set(onemap.tilesets.buildings._selectedTiles);
        const out = {};
        for (const [id, feats] of onemap.featureIndex) {
            for (const f of feats) {
                if (f.content.isDestroyed?.() || !drawn.has(f.content.tile)) continue;
                out[id] = f.color.toCssHexString().slice(0, 7);
                break;
            }
        }
        return out;
    }""")
    assert len(colours) > 500, len(colours)
    wrong = {i: (c, times.get(i)) for i, c in colours.items() if c != _band_color(times.get(i))}
    assert not wrong, list(wrong.items())[:10]
    assert len(set(colours.values())) >= 3, set(colours.values())
    # the isochrone roads are drawn: pixels on long edges moved towards their band colour
    page.evaluate(TOP_DOWN_JS, TOP_DOWN_M)
    done = _wait(page, "() => document.body.dataset.access")  # sites and isochrones too
    assert done == f"{kind}:{speed}:{minutes}", done
    _settled(page)
    edges = _api(server, page, "/analytics/access/isochrones", kind=kind, speed=speed)["features"]
    items = []
    for f in edges:
        line = _lonlat_to_4548(shapely.geometry.shape(f["geometry"]))
        if f["properties"]["band"] is None or line.length < 60:
            continue
        mid = line.interpolate(0.5, normalized=True)
        if not buildings_4548.contains(mid):
            lon, lat = TO_4490.transform(mid.x, mid.y)
            items.append({"lon": lon, "lat": lat, "id": f["id"], "kind": "polyline"})
    probes = _probe(page, "access-isochrones", items, "isochrones")
    _assert_drawn(probes, "isochrone roads", at_least=20)
    _shot(page, "civil-access.png")


def test_grid_and_reference_polygons_draw(server: str, planner_page, buildings_4548) -> None:  # noqa: ANN001
    """The other polygon layers of the planner view: grid cells coloured by population, geofences."""
    page = planner_page
    page.check("[data-layer=grid]")
    page.select_option("#grid-metric", "population")
    _wait(page, "() => document.querySelectorAll('#grid-legend li').length > 0")  # coloured by population
    page.evaluate(TOP_DOWN_JS, TOP_DOWN_M)
    _settled(page)
    view = _view_4548(page)
    cells = _api(server, page, "/collections/grid_cells/items", limit=1000)["features"]
    probes = _probe(page, "grid", _inner_points(cells, buildings_4548, per=2, inset_m=10, within=view), "grid")
    _assert_drawn(probes, "grid cells by population", at_least=30)
    # the geofences (drawn over the grid; each probe compares with the fences hidden)
    page.check("[data-layer=geofences]")
    _wait(page, "() => onemap.viewer.dataSources.getByName('geofences')[0].entities.values.length > 0")
    _settled(page)
    fences = _api(server, page, "/collections/geofences/items", limit=1000)["features"]
    probes = _probe(page, "geofences", _inner_points(fences, buildings_4548, per=2, inset_m=5, within=view),
                    "geofences")
    _assert_drawn(probes, "geofences", at_least=5, share=0.7)
    _shot(page, "civil-grid-geofences.png")


def test_big_screen_targets_panel(server: str, browser) -> None:  # noqa: ANN001
    context, page = _login(browser, server, f"/?mode=bigscreen&tour=off&scale=0.5&as_of={AS_OF}")
    try:
        n = _wait(page, "() => document.querySelectorAll('#big-targets #targets-list > li').length")
        assert n == len(targets.load_targets(REPO / "data/targets/jiefang.yaml"))
        statuses = page.evaluate("[...document.querySelectorAll('#big-targets .target-status')]"
                                 ".map((e) => e.dataset.status)")
        assert set(statuses) <= STATUSES and len(statuses) == n
        _wait(page, "() => document.body.dataset.targetCommunitiesDrawn === 'true'")
        _shot(page, "civil-bigscreen-targets.png")
    finally:
        _close(context, page)

