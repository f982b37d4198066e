"""Benchmark the viewer: requests and bytes until the first complete district view, and frames.

    .venv/bin/python bench/bench_viewer.py [--tiles DIR] [--database-url URL] [--seconds 10]
                                           [--size 1280x720] [--bigscreen-size 1920x1080]

1. First complete view: a fresh headless Chromium (no cache) opens ``/`` of a real API
   (uvicorn, ``create_app``) over ``--tiles`` (default ``var/bench/tiles-s1``, built from
   ``var/bench/sample-s1`` with ``onemap tiles build`` when missing) and waits for
   ``body[data-ready="true"]`` (terrain and every tileset loaded). Every request is counted and
   its bytes on the wire summed (CDP ``Network.loadingFinished.encodedDataLength``), split by
   kind (Cesium library, tiles, terrain, API, viewer). Goal: <= 150 requests, <= 25 MB.
2. Frames: once ready, with a continuous render loop (``?render=continuous``), frames rendered in
   ``--seconds`` (planner view at ``--size`` and the big screen at ``--bigscreen-size``).

Without ``--database-url`` the operational layers answer 503 (the 3D scene does not need them);
the figures are about the 3D scene. Software WebGL (SwiftShader): frame rates are those of a
CPU, not of a wall-screen GPU. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
GOAL_REQUESTS = 150
GOAL_MB = 25.0


def kind_of(path: str) -> str:
    if path.startswith("/cesium/"):
        return "cesium"
    if path.startswith("/tiles/"):
        return "tiles:" + path.split("/")[2]
    if path.startswith("/terrain/"):
        return "terrain"
    if path.startswith("/viewer/") or path in ("/", ""):
        return "viewer"
    return "api"


def ensure_tiles(tiles: Path) -> Path:
    if (tiles / "index.json").exists():
        return tiles
    sample = REPO / "var" / "bench" / "sample-s1"
    if not (sample / "clean" / "README.txt").exists():
        subprocess.run([sys.executable, "-m", "onemap.cli", "sample", "generate", "--out", str(sample),
                        "--seed", "7"], check=True, cwd=REPO)
    subprocess.run([sys.executable, "-m", "onemap.cli", "tiles", "build", "--sample", str(sample),
                    "--out", str(tiles)], check=True, cwd=REPO)
    return tiles


def first_view(browser, base: str, size: tuple[int, int], timeout_s: float) -> dict:  # noqa: ANN001
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    urls: dict[str, str] = {}
    wire: Counter[str] = Counter()
    count: Counter[str] = Counter()
    foreign: list[str] = []

    def sent(ev: dict) -> None:
        url = ev["request"]["url"]
        if url.startswith(("data:", "blob:")):
            return
        urls[ev["requestId"]] = url
        host = urlparse(url).netloc
        if host != urlparse(base).netloc:
            foreign.append(url)
        count[kind_of(urlparse(url).path)] += 1

    def finished(ev: dict) -> None:
        url = urls.get(ev["requestId"])
        if url:
            wire[kind_of(urlparse(url).path)] += int(ev.get("encodedDataLength", 0))

    cdp.on("Network.requestWillBeSent", sent)
    cdp.on("Network.loadingFinished", finished)
    t0 = time.perf_counter()
    page.goto(base + "/", wait_until="commit", timeout=timeout_s * 1000)
    page.wait_for_function("document.body && ['true', 'error'].includes(document.body.dataset.ready)",
                           timeout=timeout_s * 1000, polling=500)
    seconds = time.perf_counter() - t0
    ready = page.evaluate("document.body.dataset.ready")
    errors = page.evaluate("onemap.errors")
    snapshot = (sum(count.values()), sum(wire.values()), dict(count), dict(wire))
    context.close()
    return {"ready": ready, "errors": errors, "seconds": round(seconds, 1), "requests": snapshot[0],
            "bytes": snapshot[1], "by_kind_requests": snapshot[2], "by_kind_bytes": snapshot[3],
            "foreign": foreign}


def frames(browser, base: str, path: str, size: tuple[int, int], seconds: float, timeout_s: float) -> dict:  # noqa: ANN001
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.goto(base + path, wait_until="commit", timeout=timeout_s * 1000)
    page.wait_for_function("document.body && ['true', 'error'].includes(document.body.dataset.ready)",
                           timeout=timeout_s * 1000, polling=500)
    n = page.evaluate("""(ms) => new Promise((resolve) => {
        let n = 0; const scene = onemap.viewer.scene;
        const off = scene.postRender.addEventListener(() => { n++; });
        setTimeout(() => { off(); resolve(n); }, ms); })""", int(seconds * 1000))
    context.close()
    return {"frames": n, "seconds": seconds, "fps": round(n / seconds, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=Path, default=REPO / "var" / "bench" / "tiles-s1")
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--bigscreen-size", default="1920x1080")
    ap.add_argument("--timeout", type=float, default=2400.0, help="seconds to wait for the first view")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} missing (apt-get install chromium)")
        return 1
    from playwright.sync_api import sync_playwright

    from core.settings import Settings
    from tests.api_support import free_port, running_server

    tiles = ensure_tiles(args.tiles.resolve())
    size = tuple(int(v) for v in args.size.split("x"))
    big = tuple(int(v) for v in args.bigscreen_size.split("x"))
    settings = Settings(tiles_dir=tiles, var_dir=tiles.parent,
                        database_url=args.database_url or "postgresql+psycopg://bench@127.0.0.1:9/none",
                        api_connect_timeout_s=1)
    with running_server(settings, port=free_port()) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            view = first_view(browser, base, size, args.timeout)
            print(f"first complete district view ({size[0]}x{size[1]}, cold cache): ready={view['ready']} "
                  f"in {view['seconds']} s wall")
            print(f"  requests {view['requests']} (goal <= {GOAL_REQUESTS}), "
                  f"bytes {view['bytes'] / 1e6:.2f} MB on the wire (goal <= {GOAL_MB} MB)")
            for kind in sorted(view["by_kind_requests"]):
                print(f"    {kind:<18} {view['by_kind_requests'][kind]:5d} req "
                      f"{view['by_kind_bytes'].get(kind, 0) / 1e6:8.2f} MB")
            if view["foreign"]:
                print(f"  REQUESTS TO OTHER HOSTS: {view['foreign'][:5]}")
            if view["errors"]:
                print(f"  page errors: {view['errors'][:5]}")
            planner = frames(browser, base, "/?render=continuous", size, args.seconds, args.timeout)
            print(f"frames in {args.seconds:.0f} s, planner view {size[0]}x{size[1]}: {planner['frames']} "
                  f"({planner['fps']} fps)")
            wall = frames(browser, base, "/?mode=bigscreen&tour=off", big, args.seconds, args.timeout)
            print(f"frames in {args.seconds:.0f} s, big screen {big[0]}x{big[1]}: {wall['frames']} ({wall['fps']} fps)")
            print(json.dumps({"first_view": view, "planner_frames": planner, "bigscreen_frames": wall}))
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
