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

import time

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from core.frames import projected_to_lonlat
from tests.browser.pages import HAN, STEP_TIMEOUT_MS, Page, assert_scene_loaded

pytestmark = [pytest.mark.browser, pytest.mark.timeout(3 * 3600)]


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
        p.open("/?mode=bigscreen&tour=off&scale=0.5")  # half resolution: software GL at 1920x1080
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
