"""Headless Chromium pages for the viewer's browser tests: constants, a recording page, checks.

Frames take seconds in software GL on a shared 2-core machine: timeouts are generous.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[2]
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
