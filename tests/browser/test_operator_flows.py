"""Every operator flow of the command centre, in headless Chromium against the real API and
PostGIS (the clipped district of tests/browser/conftest.py, whose fixtures this uses):

* a GPS batch posted by a device account raises a geofence alarm that reaches the big screen's
  ticker within 5 s of the POST;
* the big screen's automatic tour advancing;
* dispatch from the event panel (POST /events/{id}/dispatch: the event is dispatched to the
  chosen worker, its history names the signed-in operator);
* playback of a worker's track (CZML on the timeline, the clock advancing);
* the heatmap, its time window and category filter (totals equal to counts made in SQL; every
  category of the database offered), and event clusters (the reported events in one cluster
  marker, drawn where they are by the page's own frames);
* styling buildings by height (every building drawn has its legend class colour, by its
  height in the database);
* the statistics charts (open events per category equal to counts made in SQL).

Two pages: the wall screen (1920x1080 at half resolution, closed after its two tests) and the
operator's view (1280x720 at 0.75). Small drawing buffers on purpose: frames are drawn in
software GL on 2 cores (1920x1080: ~3.5 s, and the page's main thread, which reads /stream,
waits for a frame under way). Screenshots of each state go to
test-artifacts/ops-*.png (Chinese rendered with Debian fonts-noto-cjk); their paths are printed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from core.frames import projected_to_lonlat
from tests.browser.pages import HAN, Page, assert_scene_loaded, diagnostics

pytestmark = [pytest.mark.browser, pytest.mark.timeout(3 * 3600)]

#: the issue's bound: an alarm on the big screen within 5 s of the device's POST
ALARM_WITHIN_MS = 5_000
CATEGORIES_CLUSTER = ("sanitation", "street_order")


def _shot(p: Page, name: str) -> None:
    path = p.screenshot(f"ops-{name}.png")
    print(f"screenshot: {path}")


def _all(url: str, sql: str, **params: object) -> list[sa.Row]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return list(c.execute(sa.text(sql), params))
    finally:
        engine.dispose()


def _one(url: str, sql: str, **params: object) -> dict:
    (row,) = _all(url, sql, **params)
    return dict(row._mapping)


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


@pytest.fixture(scope="class")
def big(server: str, browser, tokens: dict[str, str]) -> Iterator[Page]:  # noqa: ANN001
    """The wall screen, for the tests of TestBigScreen only: closed before the operator's tests (it
    flashes every new event for 90 s, drawing frames meanwhile, which the operator's page would
    wait behind on 2 cores). The wall's 1920x1080 layout drawn at half resolution (?scale=0.5): a
    full 1920x1080 frame takes ~3.5 s in software GL here."""
    p = Page(browser, server, tokens["operator"], (1920, 1080))
    p.open("/?mode=bigscreen&tour=off&tour_s=4&scale=0.5")
    assert_scene_loaded(p)
    p.wait("() => document.body.dataset.live === 'open' && document.body.dataset.kpis === 'loaded'")
    # idle, as a wall screen is once it has been up a moment: the frames of its start-up (seconds
    # each in software GL) drawn, so the alarm test times the live path, not that backlog
    p.eval("onemap.whenSettled()")
    yield p
    p.close()


@pytest.fixture(scope="module")
def ops(server: str, browser, tokens: dict[str, str]) -> Iterator[Page]:  # noqa: ANN001
    p = Page(browser, server, tokens["operator"], (1280, 720))
    p.open("/?scale=0.75")  # a 960x540 drawing buffer (software GL)
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
  onemap.live.on('position', () => { window.__positionAt ??= Date.now(); });
  new MutationObserver(() => {
    for (const li of document.querySelectorAll('#ticker-list li')) (seen[li.dataset.key] ??= {}).dom ??= Date.now();
  }).observe(document.getElementById('ticker-list'), { childList: true });
  let start = null;
  onemap.viewer.scene.preRender.addEventListener(() => { start = Date.now(); });
  onemap.viewer.scene.postRender.addEventListener(() => frames.push([start, Date.now()]));
}"""


class TestBigScreen:
    """The wall screen (one page for both tests, closed after them)."""

    def test_device_batch_raises_alarm_on_big_screen(self, big: Page, server: str, viewer_db: str) -> None:
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
        seen = big.eval("(k) => ({...window.__alarmSeen[k], frames: window.__frames,"
                          " pos: window.__positionAt})", key)
        stored = _one(viewer_db, "SELECT extract(epoch FROM max(created_at)) AS at FROM stream_messages "
                                 "WHERE type = 'alarm' AND payload->>'id' = :id", id=key.split(":")[1])["at"]
        frames = ", ".join(f"{a / 1000 - t_post:+.2f} s for {b - a} ms" for a, b in seen["frames"])
        print(f"alarm {key}: POST {1000 * (t_post - t_send):.0f} ms; after its response: "
              f"positions on /stream {(seen.get('pos') or 0) / 1000 - t_post:+.2f} s, "
              f"the alarm {seen.get('sse', 0) / 1000 - t_post:+.2f} s, on the ticker "
              f"{seen['dom'] / 1000 - t_post:+.2f} s (stored {float(stored or 0) - t_post:+.2f} s, transaction "
              f"start); frames begun since the probe (after the response; their JavaScript time, the "
              f"drawing itself runs in the GPU process): [{frames}]")
        assert seen["dom"] / 1000 - t_post <= ALARM_WITHIN_MS / 1000, (seen, t_post, diagnostics(big))
        row = _one(viewer_db, "SELECT kind, worker_id FROM alarms WHERE id = :id", id=int(key.split(":")[1]))
        assert row == {"kind": "left_patrol_area", "worker_id": area["worker_id"]}
        text = big.page.locator(f'#ticker-list li[data-key="{key}"]').inner_text()
        assert HAN.search(text), text
        _shot(big, "bigscreen-alarm")

    def test_auto_tour_advances(self, big: Page) -> None:
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


#: the shown cluster marker holding every event of ``ids``: its members, where it is and the colour
#: the last frame drew in its fill (7 px up-left of its centre, off the count); drawn = that colour
#: is the events' cluster colour (events.js styleClusters, #d7263d)
CLUSTER_JS = """(ids) => {
  const scene = onemap.viewer.scene, canvas = scene.canvas;
  const c = onemap.events.dataSource.clustering, shown = c._clusterBillboardCollection;
  for (let i = 0; c.enabled && i < (shown?.length ?? 0); i++) {
    const b = shown.get(i), held = (b.id?.onemapCluster ?? []).map((e) => e.id);
    if (!b.show || !ids.every((id) => held.includes(`event:${id}`))) continue;
    const xy = Cesium.SceneTransforms.worldToWindowCoordinates(scene, b.position);
    if (!xy) return { held, xy: null };
    const sx = canvas.width / canvas.clientWidth, sy = canvas.height / canvas.clientHeight;
    const copy = document.createElement('canvas');
    copy.width = canvas.width; copy.height = canvas.height;
    const g = copy.getContext('2d', { willReadFrequently: true });
    g.drawImage(canvas, 0, 0);
    const d = g.getImageData(Math.round((xy.x - 7) * sx), Math.round((xy.y - 7) * sy), 1, 1).data;
    const rgb = [d[0], d[1], d[2]];
    const drawn = [215, 38, 61].every((v, k) => Math.abs(v - rgb[k]) < 40);
    return { held, xy: [xy.x, xy.y], canvas: [canvas.clientWidth, canvas.clientHeight], rgb, ready: b.ready, drawn };
  }
  return null;
}"""


def _category_codes(url: str) -> list[str]:
    return sorted(r.code for r in _all(url, "SELECT code FROM event_category"))


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
    # every category of the database is offered (the three of issue 16 were missing)
    offered = ops.eval("[...document.querySelectorAll('#heat-category option')].map((o) => o.value).filter(Boolean)")
    assert sorted(offered) == _category_codes(viewer_db), offered
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
    # straight down from 3 km over the four: one shown cluster marker holds them (events.js
    # styleClusters: billboard.id.onemapCluster) and the page draws it where they are (the canvas'
    # centre) by its own frames (none asked for here: render on demand must finish by itself)
    ops.eval("""([lon, lat]) => onemap.viewer.camera.setView({
        destination: Cesium.Cartesian3.fromDegrees(lon, lat, 3000),
        orientation: { heading: 0, pitch: -Cesium.Math.PI_OVER_TWO, roll: 0 } })""", [float(lon[0]), float(lat[0])])
    try:
        cluster = ops.wait(f"(ids) => {{ const c = ({CLUSTER_JS})(ids); return c?.drawn ? c : null; }}",
                           arg=ids, timeout=60_000, polling=250)
    except TimeoutError:
        raise AssertionError(f"cluster of {ids} not drawn: {ops.eval(CLUSTER_JS, ids)}") from None
    assert all(m.startswith("event:") for m in cluster["held"]), cluster
    (x, y), (w, h) = cluster["xy"], cluster["canvas"]
    assert abs(x - w / 2) < 60 and abs(y - h / 2) < 60, cluster
    _shot(ops, "clusters")


#: records, for every building tile drawn while the height style is on, each feature's id, its
#: tile "height" property and the colour the style gave it. The tiles drawn in a frame are those
#: tileVisible names; their colours are read after the frame (postRender): a glTF tile's model
#: applies a new style in its own update, after tileVisible.
STYLED_PROBE_JS = """() => {
  const seen = window.__styled = {};
  const features = (c, out = []) => {
    if (!c) return out;
    for (const inner of c.innerContents ?? []) features(inner, out);
    for (let i = 0; i < (c.featuresLength || 0); i++) out.push(c.getFeature(i));
    return out;
  };
  let drawn = [];
  const offVisible = onemap.tilesets.buildings.tileVisible.addEventListener((tile) => {
    if (document.body.dataset.buildingStyle === 'height') drawn.push(tile);
  });
  const offRender = onemap.viewer.scene.postRender.addEventListener(() => {
    for (const tile of drawn) {
      for (const f of features(tile.content)) {
        const rgb = [f.color.red, f.color.green, f.color.blue].map((v) => Math.round(v * 255));
        seen[f.getProperty('id')] = [f.getProperty('height'), ...rgb];
      }
    }
    drawn = [];
  });
  window.__styledOff = () => { offVisible(); offRender(); };
}"""

#: the legend's classes as [lower bound (m), [r, g, b]]: "< 10 m" has none, "10–24 m" 10, "≥ 100 m" 100
LEGEND_JS = """() => [...document.querySelectorAll('#legend li')].map((li) => [
  li.textContent.trim(), getComputedStyle(li.querySelector('.swatch')).backgroundColor])"""


def _legend_classes(items: list[list[str]]) -> list[tuple[float, tuple[int, ...]]]:
    out = []
    for label, css in items:
        rgb = tuple(int(v) for v in re.findall(r"\d+", css)[:3])
        low = float("-inf") if label.startswith("<") else float(re.search(r"\d+(?:\.\d+)?", label).group())
        out.append((low, rgb))
    return sorted(out)


def test_style_buildings_by_height(ops: Page, viewer_db: str) -> None:
    legend0 = ops.page.locator("#legend").inner_text()
    ops.eval("onemap.viewer.homeButton.viewModel.command()")  # the home button: the district view
    ops.eval(STYLED_PROBE_JS)
    ops.page.locator('input[name="building-style"][value="height"]').check()
    ops.wait("() => document.body.dataset.buildingStyle === 'height'")
    style = ops.eval("JSON.stringify(onemap.tilesets.buildings.style?.style ?? {})")
    assert "height" in style.lower(), style
    assert ops.page.locator("#legend").inner_text() != legend0
    # every building drawn has the colour of its height class in the legend, its height read from
    # the database (not from the tile)
    classes = _legend_classes(ops.eval(LEGEND_JS))
    assert len(classes) == 5 and classes[0][0] == float("-inf"), classes
    styled = ops.wait("() => { onemap.viewer.scene.requestRender(); const s = window.__styled;"
                      " return Object.keys(s).length ? s : null; }", polling=250)
    heights = _heights(viewer_db, list(styled))
    bounds = [low for low, _ in classes[1:]]
    wrong, checked, by_class = [], 0, {}
    assert set(heights) == set(styled), f"drawn but not in the database: {sorted(set(styled) - set(heights))[:10]}"
    for bid, (tile_h, *rgb) in styled.items():
        h = heights[bid]
        if h is None:
            continue  # neither height nor floors delivered: the tiles' default height, not in the database
        assert abs(tile_h - h) < 0.01, (bid, tile_h, h)
        if any(abs(h - b) < 0.01 for b in bounds):
            continue  # float32 in the tile: a height on a class bound may fall either side
        want = [rgb_ for low, rgb_ in classes if h >= low][-1]
        checked += 1
        by_class[want] = by_class.get(want, 0) + 1
        if tuple(rgb) != want:
            wrong.append((bid, h, rgb, want))
    print(f"buildings by height: {checked} drawn buildings checked, per class colour {by_class}")
    assert checked > 0 and not wrong, (len(wrong), wrong[:10])
    assert len(by_class) >= 2, by_class  # more than one class on screen: the colour depends on height
    _shot(ops, "buildings-by-height")
    ops.eval("window.__styledOff()")
    ops.page.locator('input[name="building-style"][value="use"]').check()


def _heights(url: str, ids: list[str]) -> dict[str, float | None]:
    """Building heights as the tiles are built from the same delivery: the delivered height, else
    floors x 3 m (pipelines/buildings.py, height_from_floors); None for a building with neither."""
    rows = _all(url, "SELECT id, COALESCE(height, floors * 3.0) AS h FROM buildings WHERE id = ANY(:ids)", ids=ids)
    return {r.id: r.h for r in rows}


def _open_by_category(url: str) -> dict[str, int]:
    """Open events per category with any event, by the category's Chinese name (the page's language)."""
    rows = _all(url, "SELECT k.label_zh, count(*) FILTER (WHERE e.status NOT IN ('closed', 'rejected')) AS n "
                     "FROM events e JOIN event_category k ON k.code = e.category GROUP BY 1")
    return {label: n for label, n in rows}


def test_statistics_charts(ops: Page, viewer_db: str) -> None:
    ops.eval("document.querySelector('[data-tool=\"stats\"]').click()")
    ops.wait("() => document.querySelectorAll('#tool-pane svg.chart').length >= 2", polling=250)
    bars = ops.eval("document.querySelectorAll('#tool-pane svg.chart rect').length")
    assert bars >= 3, bars
    assert HAN.search(ops.page.locator("#tool-pane").inner_text())
    # the open events per category chart: a row for every category with events (11 since issue 16:
    # a top-10 cut dropped one), its value counted in SQL
    rows = ops.wait("""() => { const c = document.querySelectorAll('#tool-pane .charts > .later')[1];
        const svg = c?.querySelector('svg.chart'), text = (k) => [...svg.querySelectorAll(k)].map((t) => t.textContent);
        return svg && [text('text.chart-label'), text('text.chart-value')]; }""", polling=250)
    shown = {label: int(re.sub(r"\D", "", v)) for label, v in zip(*rows, strict=True)}
    assert shown == _open_by_category(viewer_db), rows
    _shot(ops, "statistics")
    ops.eval("document.querySelector('[data-tool=\"stats\"]').click()")
