"""The CesiumJS viewer end to end, in headless Debian Chromium (software WebGL via SwiftShader).

Real pieces only: the session's sample delivery clipped to a 600 m window
(tests/viewer_district.py), tiles from `onemap tiles build`, PostGIS loaded by `load_sample`, the
real API (uvicorn, create_app) serving the viewer, Cesium from node_modules, and a camera clip
recorded by Chromium itself. Checks: no request leaves 127.0.0.1; the terrain and every tileset
finish loading (body[data-ready]); a pick on a known building opens its panel with the right id
and attributes; Chinese by default; the big screen shows KPIs and reacts to an event POSTed
during the test. Screenshots go to test-artifacts/ (gitignored).

Frames take seconds in software GL on a shared 2-core machine: timeouts are generous.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from core.frames import projected_to_lonlat
from tests.api_support import free_port, make_settings, running_server
from tests.conftest import make_world_readable_tmpdir
from tests.viewer_district import build_tiles, clip_delivery, pointcloud_window, record_test_clip

pytestmark = [pytest.mark.browser, pytest.mark.timeout(3 * 3600)]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-default-apps", "--disable-extensions", "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
#: waiting for the whole scene (terrain + every tileset) in software GL under load
READY_TIMEOUT_MS = int(os.environ.get("ONEMAP_VIEWER_READY_TIMEOUT_S", "2400")) * 1000
STEP_TIMEOUT_MS = 600_000
DB_NAME = "onemap_viewer_test"
HAN = re.compile(r"[\u4e00-\u9fff]")

if not Path(CHROMIUM).exists():  # pragma: no cover - the Makefile installs it for `make test`
    pytest.skip(f"{CHROMIUM} not installed (make setup-test installs it)", allow_module_level=True)


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def district(sample_dir: Path) -> Iterator[dict]:
    """The clipped delivery and its tiles (built by the real `onemap tiles build`)."""
    root = make_world_readable_tmpdir("onemap-viewer-")
    clean = sample_dir / "clean"
    window = pointcloud_window(clean)
    delivery = clip_delivery(clean, root / "delivery", window)
    tiles = build_tiles(delivery, root / "tiles")
    yield {"root": root, "delivery": delivery, "tiles": tiles, "window": window}
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def viewer_db(pg_server, district: dict) -> Iterator[str]:  # noqa: ANN001 - tests.db_support.PgServer
    """A database of its own on the session cluster, loaded with the clipped delivery (owner URL)."""
    from gis import migrate
    from gis.loaders import load_sample

    url = pg_server.create_database(DB_NAME)
    migrate.upgrade(url)
    report = load_sample(district["delivery"], url=url.replace("postgresql+psycopg://", "postgresql://", 1),
                         gps_limit=100_000)
    for layer in report.layers:
        assert not layer.rejects, (layer.layer, layer.rejects[:3])
    engine = sa.create_engine(url)
    with engine.begin() as c:  # camera streams: the local test clip (the delivery has RTSP addresses)
        c.execute(sa.text("UPDATE cameras SET stream_url = '/media/sample.webm?cam=' || id"))
    engine.dispose()
    yield url


@pytest.fixture(scope="module")
def tokens(viewer_db: str) -> dict[str, str]:
    from api.auth import add_user

    engine = sa.create_engine(viewer_db)
    try:
        return {role: add_user(engine, f"viewer-test-{role}", role) for role in ("operator", "planner")}
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=120_000)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(district: dict, viewer_db: str, browser) -> Iterator[str]:  # noqa: ANN001
    media = district["root"] / "media"
    record_test_clip(browser, media / "sample.webm")
    settings = make_settings(viewer_db, district["tiles"], media_dir=media, var_dir=district["root"],
                             sse_heartbeat_s=5.0)
    with running_server(settings, port=free_port()) as base:
        yield base


CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(
    `${e.effectiveDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`));
"""


class Page:
    """A page that records every request and console error."""

    def __init__(self, browser, base: str, token: str | None, size: tuple[int, int]) -> None:  # noqa: ANN001
        self.base = base
        self.context = browser.new_context(viewport={"width": size[0], "height": size[1]})
        if token:
            self.context.add_init_script(f"localStorage.setItem('onemap.token', {json.dumps(token)})")
        # every Content-Security-Policy violation is recorded; close() asserts there were none
        self.context.add_init_script(CSP_LISTENER)
        self.page = self.context.new_page()
        self.page.set_default_timeout(STEP_TIMEOUT_MS)
        self.requests: list[str] = []
        self.console: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def open(self, path: str) -> None:
        self.page.goto(self.base + path, wait_until="commit", timeout=STEP_TIMEOUT_MS)
        self.wait("() => document.body && ['true', 'error'].includes(document.body.dataset.ready)",
                  timeout=READY_TIMEOUT_MS, polling=2000)

    def eval(self, js: str, arg: object = None) -> object:
        return self.page.evaluate(js, arg)

    def wait(self, js: str, arg: object = None, *, timeout: float = STEP_TIMEOUT_MS, polling: float = 500) -> object:
        """Polls ``js`` (an expression or a function of ``arg``) until it is truthy; returns that value.

        Playwright's ``wait_for_function`` runs its predicate through ``eval()`` inside the page,
        which the viewer's Content-Security-Policy (no 'unsafe-eval') refuses; ``evaluate`` goes
        through the DevTools protocol, which the CSP does not govern."""
        deadline = time.monotonic() + timeout / 1000
        while True:
            value = self.eval(js, arg)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{js[:200]!r} still falsy after {timeout / 1000:.1f} s\n{diagnostics(self)}")
            self.page.wait_for_timeout(polling)

    def screenshot(self, name: str) -> Path:
        """Full page screenshot with the render loop paused (a screenshot needs a compositor
        frame, and WebGL frames are slow in software)."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.eval("onemap.pauseRendering(); onemap.viewer.render()")
        try:
            self.page.screenshot(path=str(path), timeout=STEP_TIMEOUT_MS)
        finally:
            self.eval("onemap.resumeRendering()")
        return path

    def foreign_requests(self) -> list[str]:
        host = urlparse(self.base).netloc
        return [u for u in self.requests
                if not u.startswith(("data:", "blob:")) and urlparse(u).netloc != host]

    def csp_violations(self) -> list[str]:
        try:
            return list(self.eval("window.__cspViolations || []"))  # type: ignore[call-overload]
        except Exception:  # noqa: BLE001 - page gone: nothing to read
            return []

    def close(self) -> None:
        """Closes the page; fails when the page broke the CSP (the server sends it on every response)."""
        violations = self.csp_violations()
        self.context.close()
        assert violations == [], violations[:10]


def diagnostics(p: Page) -> str:
    return "\n".join(p.console[-40:])


def assert_scene_loaded(p: Page) -> None:
    boot = p.eval("() => ({ ready: document.body.dataset.ready, errors: window.onemap?.errors })")
    assert boot["ready"] == "true", (boot, diagnostics(p))
    state = p.eval("""() => ({
        ready: document.body.dataset.ready, errors: onemap.errors,
        tilesets: Object.fromEntries(Object.entries(onemap.tilesets).map(([k, t]) => [k, t.tilesLoaded])),
        catalog: onemap.catalog ? onemap.layers.tileLayers(onemap.catalog).map((l) => l.name) : null,
        terrain: onemap.viewer.scene.terrainProvider instanceof Cesium.CesiumTerrainProvider,
        globe: onemap.viewer.scene.globe.tilesLoaded })""")
    assert state["ready"] == "true", (state, diagnostics(p))
    assert state["errors"] == [], (state["errors"], diagnostics(p))
    assert sorted(state["tilesets"]) == sorted(state["catalog"]), state
    assert {"buildings", "roads", "vegetation", "furniture", "pointcloud"} <= set(state["catalog"]), state
    assert state["terrain"], "terrain is not the quantized-mesh provider from /terrain"
    terrain_tiles = [u for u in p.requests if ".terrain" in u]
    assert terrain_tiles, "no terrain tile was requested"


# ------------------------------------------------------------------------------------ tests
def test_planner_view(server: str, browser, tokens: dict[str, str], viewer_db: str) -> None:  # noqa: ANN001
    p = Page(browser, server, tokens["planner"], (1280, 720))
    try:
        p.open("/")
        assert_scene_loaded(p)
        assert p.foreign_requests() == [], p.foreign_requests()[:10]
        assert any("/cesium/Cesium.js" in u for u in p.requests)
        # Chinese by default, everywhere
        assert p.eval("document.documentElement.lang") == "zh-CN"
        assert HAN.search(p.eval("document.title"))
        assert HAN.search(p.eval("document.querySelector('#layer-tree').innerText"))
        assert p.eval("document.body.dataset.role") == "planner"
        p.screenshot("viewer-planner.png")

        # a scripted pick on a known building opens its panel with its attributes
        engine = sa.create_engine(viewer_db)
        with engine.connect() as c:
            row = c.execute(sa.text(
                "SELECT id, name, use, floors FROM buildings WHERE use IS NOT NULL AND name IS NOT NULL "
                "ORDER BY roof_height_m DESC, id LIMIT 1")).mappings().one()
        engine.dispose()
        res = p.eval("(id) => onemap.pickBuilding(id)", row["id"])
        assert res["id"] == row["id"]
        if res["picked"]:  # the same through a real mouse click at the point that picks it
            p.eval("document.getElementById('panel-close').click()")
            p.page.mouse.click(res["x"], res["y"])
        sel = f'#panel[data-kind="building"][data-id="{row["id"]}"]'
        p.page.wait_for_selector(sel, state="visible")
        panel = p.page.locator(sel)
        use_label = p.eval("(u) => onemap.t('use.' + u)", row["use"])
        assert HAN.search(use_label)
        assert panel.locator('dd[data-key="use"]').first.inner_text() == use_label
        assert panel.locator('dd[data-key="id"]').first.inner_text() == row["id"]
        # the PostGIS record arrives in the second section
        p.page.wait_for_selector(f'{sel} .later dd[data-key="name"]')
        assert row["name"] in panel.inner_text()
        assert res["picked"], "the building could not be picked on screen (panel opened from metadata)"
        p.screenshot("viewer-building-panel.png")

        # a camera: FOV frustum; its stream URL is for operations roles only (a planner sees the
        # offline box; the operator's video plays in test_bigscreen_reacts_to_new_event)
        cam = p.eval("""async () => {
            await onemap.cameras.layer.ready();
            const id = [...onemap.cameras.cameras.keys()][0];
            await onemap.openCamera(id);
            return id; }""")
        p.page.wait_for_selector(f'#panel[data-kind="camera"][data-id="{cam}"]')
        p.page.wait_for_selector('#panel .video-offline')
        assert "/media/" not in p.page.locator("#panel").inner_text()
        assert p.eval("onemap.viewer.dataSources.getByName('camera-fov')[0].entities.values.length") >= 5
        p.screenshot("viewer-camera.png")

        # measuring (scripted points: 100 m east of each other at the same height)
        m = p.eval("""() => { const [lon, lat] = onemap.district.center;
            const dlon = 100 / (111320 * Math.cos(lat * Math.PI / 180));
            return onemap.measure.measurePoints('distance', [[lon, lat, 30], [lon + dlon, lat, 30]]); }""")
        assert abs(m["value"] - 100) < 0.5, m
        assert HAN.search(m["text"])

        # English on demand
        p.eval("document.getElementById('lang-toggle').click()")
        assert p.eval("document.documentElement.lang") == "en"
        assert "3D One Map" in p.eval("document.title")
        assert p.foreign_requests() == [], p.foreign_requests()[:10]
    finally:
        p.close()


def test_bigscreen_reacts_to_new_event(server: str, browser, tokens: dict[str, str], district: dict) -> None:  # noqa: ANN001
    p = Page(browser, server, tokens["operator"], (1920, 1080))
    try:
        p.open("/?mode=bigscreen&tour=off")
        assert_scene_loaded(p)
        p.wait("() => document.body.dataset.kpis === 'loaded'")
        kpis = p.page.locator("#kpis [data-kpi]")
        assert kpis.count() == 4
        assert HAN.search(p.page.locator("#kpis").inner_text())
        p.wait("() => document.body.dataset.live === 'open'")
        before = int(p.page.locator('[data-kpi="eventsToday"] .kpi-value').inner_text().replace(",", ""))

        # an operator reports an event through the API while the wall screen is up
        w = district["window"]
        lon, lat = projected_to_lonlat(np.array([(w.x0 + w.x1) / 2]), np.array([(w.y0 + w.y1) / 2]), "EPSG:4548")
        r = httpx.post(f"{server}/events", headers={"Authorization": f"Bearer {tokens['operator']}"},
                       json={"category": "safety_hazard", "priority": "A", "source": "camera",
                             "description": "浏览器测试：井盖缺失", "lon": float(lon[0]), "lat": float(lat[0])},
                       timeout=60)
        assert r.status_code == 201, r.text
        event_id = r.json()["id"]
        p.wait("(id) => (document.body.dataset.flashed || '').split(' ').includes(id)",
                                 arg=event_id, polling=1000)
        assert event_id in p.page.locator("#ticker-list").inner_text()
        p.wait(
            "(n) => Number(document.querySelector('[data-kpi=\"eventsToday\"] .kpi-value').innerText"
            ".replace(/,/g, '')) > n", arg=before, polling=1000)
        time.sleep(1)
        p.screenshot("viewer-bigscreen.png")
        assert p.foreign_requests() == [], p.foreign_requests()[:10]

        # an operator sees a camera's stream (the local test clip), under the CSP
        cam = p.eval("""async () => {
            await onemap.cameras.layer.ready();
            const id = [...onemap.cameras.cameras.keys()][0];
            await onemap.openCamera(id);
            return id; }""")
        p.page.wait_for_selector(f'#panel[data-kind="camera"][data-id="{cam}"]', state="attached")
        p.wait(
            "() => ['playing', 'loaded'].includes(document.querySelector('#panel .video-wrap')?.dataset.state)",
            timeout=STEP_TIMEOUT_MS, polling=1000)
    finally:
        p.close()
