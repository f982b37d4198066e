"""Fixtures of the viewer's browser tests (this folder): the clipped sample district, its database,
accounts, one Chromium and the real API serving the viewer. Package-scoped: every module of
tests/browser shares one district, database, Chromium and server (built once: the tiles build
and the sample load cost minutes on 2 cores). Modules therefore must not depend on a pristine
database: they add their own rows (events, accounts, fixes) and compare with what they added or
with counts read from SQL at the time."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.api_support import free_port, make_settings, running_server
from tests.browser.pages import CHROMIUM, CHROMIUM_ARGS, DB_NAME
from tests.conftest import make_world_readable_tmpdir
from tests.viewer_district import build_tiles, clip_delivery, pointcloud_window, record_test_clip

if not Path(CHROMIUM).exists():  # pragma: no cover - the Makefile installs it for `make test`
    pytest.skip(f"{CHROMIUM} not installed (make setup-test installs it)", allow_module_level=True)


@pytest.fixture(scope="package")
def district(sample_dir: Path) -> Iterator[dict]:
    """The clipped delivery and its tiles (built by the real `onemap tiles build`)."""
    root = make_world_readable_tmpdir("onemap-viewer-")
    clean = sample_dir / "clean"
    window = pointcloud_window(clean)
    delivery = clip_delivery(clean, root / "delivery", window)
    tiles = build_tiles(delivery, root / "tiles")
    yield {"root": root, "delivery": delivery, "tiles": tiles, "window": window}
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")
def tokens(viewer_db: str) -> dict[str, str]:
    from api.auth import add_user

    engine = sa.create_engine(viewer_db)
    try:
        return {role: add_user(engine, f"viewer-test-{role}", role) for role in ("operator", "planner")}
    finally:
        engine.dispose()


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=120_000)
        yield b
        b.close()


@pytest.fixture(scope="package")
def server(district: dict, viewer_db: str, browser) -> Iterator[str]:  # noqa: ANN001
    media = district["root"] / "media"
    record_test_clip(browser, media / "sample.webm")
    settings = make_settings(viewer_db, district["tiles"], media_dir=media, var_dir=district["root"],
                             sse_heartbeat_s=5.0)
    with running_server(settings, port=free_port()) as base:
        yield base
