"""The civil-affairs viewer (issue 16) in headless Debian Chromium under the real CSP: a planner
logs in through the form; the targets panel lists every target of the sample targets file with
its status; the communities are coloured by /analytics/targets communities[].status; the
camera-gap layer loads viewsheds, unseen hot spots and candidate sites; the big screen shows the
targets panel. The full sample is loaded into a database of its own (no tiles needed: an empty
tiles folder); the targets are evaluated before their deadline (?as_of) so communities are on and off track.
Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from gis import targets
from tests.api_support import make_settings, running_server
from tests.browser.pages import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO

pytestmark = [pytest.mark.browser, pytest.mark.timeout(3600)]

STEP_MS = 600_000
PASSWORD = "civil browser password"
DB_NAME = "onemap_civil_browser"
AS_OF = "2026-10-15T16:00:00Z"  # before the targets' deadline (2026-10-31), Q3+Q4 surveys in
STATUSES = {"met", "on_track", "off_track", "missed", "no_data"}
STATUS_COLORS = {"on_track": "#66bd63", "off_track": "#f46d43", "no_data": "#9e9e9e"}
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(
    `${e.effectiveDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`));
"""

if not Path(CHROMIUM).exists():  # pragma: no cover - the Makefile installs it for `make test`
    pytest.skip(f"{CHROMIUM} not installed (make setup-test installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def civil_db(pg_server, sample_dir: Path) -> Iterator[str]:  # noqa: ANN001 - tests.db_support.PgServer
    from gis import migrate
    from gis.accounts import add_user
    from gis.loaders import load_sample

    url = pg_server.create_database(DB_NAME)
    migrate.upgrade(url)
    load_sample(sample_dir, url=url.replace("postgresql+psycopg://", "postgresql://", 1), gps_limit=1000,
                derive=False)
    engine = sa.create_engine(url)
    try:
        add_user(engine, "civil-planner", "planner", password=PASSWORD, ttl_s=False)
    finally:
        engine.dispose()
    yield url


@pytest.fixture(scope="module")
def server(civil_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tiles = tmp_path_factory.mktemp("civil-no-tiles")  # no tilesets: the overlays are what is tested
    with running_server(make_settings(civil_db, tiles)) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=120_000)
        yield b
        b.close()


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
    page.evaluate("onemap.pauseRendering(); onemap.viewer.render()")
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


def _api_targets(base: str, page) -> dict:  # noqa: ANN001
    token = page.evaluate("sessionStorage.getItem('onemap.session')")
    r = httpx.get(f"{base}/analytics/targets", params={"as_of": AS_OF},
                  headers={"Authorization": f"Bearer {token}"}, timeout=300)
    assert r.status_code == 200, r.text[:500]
    return r.json()


def test_targets_panel_and_community_colouring(server: str, browser) -> None:  # noqa: ANN001
    context, page = _login(browser, server, f"/?lang=en&as_of={AS_OF}")
    try:
        doc = _api_targets(server, page)
        page.click("[data-tool=targets]")
        _wait(page, "() => document.querySelectorAll('#targets-list > li').length > 0")
        cards = page.evaluate("""() => [...document.querySelectorAll('#targets-list > li')].map((li) => ({
            id: li.dataset.target, status: li.dataset.status,
            badge: li.querySelector('.target-status').textContent,
            value: li.querySelector('.target-value').textContent,
            dots: [...li.querySelectorAll('.target-dots li')].map((d) => d.dataset.status)}))""")
        assert [c["id"] for c in cards] == [t["id"] for t in doc["targets"]]
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
        assert _wait(page, "() => document.body.dataset.targetCommunitiesDrawn !== 'false' && "
                           "document.body.dataset.targetCommunitiesDrawn") == "true"
        assert page.evaluate("onemap.viewer.scene.groundPrimitives.length") > 0
        _shot(page, "civil-targets.png")
    finally:
        _close(context, page)


def test_camera_gap_layer(server: str, browser) -> None:  # noqa: ANN001
    context, page = _login(browser, server, "/")
    try:
        page.check("[data-layer=cameraGaps]")
        state = _wait(page, "() => { const s = document.body.dataset.cameraGaps || ''; "
                            "return s && !s.startsWith('loading') ? s : null; }")
        assert not state.startswith("error"), state
        parts = dict(p.split(":") for p in state.split(","))
        assert int(parts["viewsheds"]) > 100 and int(parts["sites"]) >= 1
        kinds = page.evaluate("""() => {
            const ds = onemap.viewer.dataSources.getByName('camera-gaps')[0];
            const out = {};
            for (const e of ds.entities.values) out[e.onemap.kind] = (out[e.onemap.kind] || 0) + 1;
            return out;
        }""")
        assert kinds["viewshed"] >= int(parts["viewsheds"]) and kinds["camera_site"] == int(parts["sites"])
        assert kinds.get("unseen_hotspot", 0) >= int(parts["hotspots"])
        assert _wait(page, "() => document.body.dataset.cameraGapsDrawn !== 'false' && "
                           "document.body.dataset.cameraGapsDrawn") == "true"
        _shot(page, "civil-camera-gaps.png")
        (ARTIFACTS / "civil-camera-gaps.json").write_text(json.dumps({"state": state, "entities": kinds}))
    finally:
        _close(context, page)


def test_big_screen_targets_panel(server: str, browser) -> None:  # noqa: ANN001
    context, page = _login(browser, server, f"/?mode=bigscreen&tour=off&as_of={AS_OF}")
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
