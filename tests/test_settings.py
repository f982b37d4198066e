"""Settings per concern: same ONEMAP_* variables, validators with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from core.settings import (
    ApiSettings,
    DatabaseSettings,
    Settings,
    StreamSettings,
    TileSettings,
    get_settings,
    load_settings,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import os

    for key in list(os.environ):
        if key.startswith("ONEMAP_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env from the repo
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_groups_read_the_same_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ONEMAP_VAR_DIR", str(tmp_path / "v"))
    monkeypatch.setenv("ONEMAP_DATABASE_URL", "postgresql://u@127.0.0.1:5432/x")
    monkeypatch.setenv("ONEMAP_PG_PORT", "5433")
    monkeypatch.setenv("ONEMAP_API_POOL_SIZE", "3")
    monkeypatch.setenv("ONEMAP_TILE_CACHE_BYTES", "1024")
    monkeypatch.setenv("ONEMAP_SSE_RING_SIZE", "7")
    monkeypatch.setenv("ONEMAP_CORS_ORIGINS", '["http://a"]')
    s = get_settings()
    assert s is get_settings()  # cached
    assert s.db.database_url == "postgresql://u@127.0.0.1:5432/x"
    assert s.db.pg_port == 5433
    assert s.db.pg_dir == tmp_path / "v" / "pg"
    assert s.api.api_pool_size == 3
    assert s.api.cors_origins == ["http://a"]
    assert s.tiles.tile_cache_bytes == 1024
    assert s.stream.sse_ring_size == 7
    assert s.var_dir == tmp_path / "v"


def test_folders_default_under_var_dir(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path)
    assert s.tiles.tiles_dir == tmp_path / "tiles"
    assert s.paths.media_dir == tmp_path / "media"
    assert s.paths.sample_dir == tmp_path / "sample"
    s = Settings(var_dir=tmp_path, tiles_dir=tmp_path / "t")
    assert s.tiles.tiles_dir == tmp_path / "t"


def test_flat_overrides_route_to_their_group(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path, database_url=None, pg_port=0, max_gps_batch=9, sse_heartbeat_s=1.0)
    assert s.db.var_dir == s.tiles.var_dir == s.paths.var_dir == tmp_path
    assert s.db.database_url is None and s.db.pg_port == 0
    assert s.api.max_gps_batch == 9
    assert s.stream.sse_heartbeat_s == 1.0
    with pytest.raises(TypeError, match="unknown setting 'resolved_tiles_dir'"):
        Settings(resolved_tiles_dir=tmp_path)


def test_replace_swaps_one_group(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path)
    t = s.replace(tiles=s.tiles.model_copy(update={"tiles_dir": tmp_path / "x"}))
    assert t.tiles.tiles_dir == tmp_path / "x" and t.api is s.api and s.tiles.tiles_dir == tmp_path / "tiles"


def test_empty_database_url_means_unset() -> None:
    assert DatabaseSettings(database_url="").database_url is None


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h:1/db"])
def test_database_url_accepts_postgres(url: str) -> None:
    assert DatabaseSettings(database_url=url).database_url == url


def test_database_url_must_be_postgres() -> None:
    with pytest.raises(ValidationError, match=r"must be a PostgreSQL URL .* got scheme 'mysql'"):
        DatabaseSettings(database_url="mysql://u@h/db")


@pytest.mark.parametrize("port", [-1, 65536])
def test_ports_in_range(port: int) -> None:
    with pytest.raises(ValidationError, match="pg_port"):
        DatabaseSettings(pg_port=port)
    with pytest.raises(ValidationError, match="port"):
        ApiSettings(port=port)
    assert DatabaseSettings(pg_port=65535).pg_port == 65535


@pytest.mark.parametrize("field", ["max_page_size", "max_body_bytes", "api_pool_size", "api_pool_timeout_s",
                                   "max_bbox_area_km2", "max_gps_batch"])
def test_api_sizes_and_timeouts_positive(field: str) -> None:
    with pytest.raises(ValidationError, match=f"{field}\n.*greater than 0"):
        ApiSettings(**{field: 0})


def test_page_size_not_over_max() -> None:
    with pytest.raises(ValidationError, match=r"default_page_size \(500\) must not exceed max_page_size \(100\)"):
        ApiSettings(default_page_size=500, max_page_size=100)
    assert ApiSettings(default_page_size=100, max_page_size=100).max_page_size == 100


def test_tile_and_stream_validators() -> None:
    with pytest.raises(ValidationError, match="tile_cache_bytes"):
        TileSettings(tile_cache_bytes=-1)
    with pytest.raises(ValidationError, match="sse_ring_size"):
        StreamSettings(sse_ring_size=0)
    with pytest.raises(ValidationError, match="LISTEN channel"):
        StreamSettings(sse_channel="bad; drop")
    with pytest.raises(ValidationError, match="sse_reconnect_min_s"):
        StreamSettings(sse_reconnect_min_s=5, sse_reconnect_max_s=1)
    assert ApiSettings(auth_cache_s=0).auth_cache_s == 0  # 0 = no token cache (tests use it)


def test_bad_environment_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEMAP_PG_PORT", "70000")
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert "ONEMAP_PG_PORT='70000'" in str(info.value) or "ONEMAP_PG_PORT=70000" in str(info.value)
    assert "less than or equal to 65535" in str(info.value)
    monkeypatch.delenv("ONEMAP_PG_PORT")
    with pytest.raises(ConfigError, match="ONEMAP_MAX_PAGE_SIZE=0"):
        load_settings(max_page_size=0)


def test_dispatch_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import DispatchSettings

    d = get_settings().dispatch
    assert (d.dispatch_fix_max_age_s, d.dispatch_escalation_interval_s, d.dispatch_busy_window_h,
            d.dispatch_walk_kmh, d.dispatch_drive_kmh, d.road_end_snap_m) == (300, 30, 12, 5, 20, 2)
    monkeypatch.setenv("ONEMAP_ROAD_END_SNAP_M", "0.5")
    monkeypatch.setenv("ONEMAP_DISPATCH_FIX_MAX_AGE_S", "120")
    assert DispatchSettings().road_end_snap_m == 0.5 and Settings().dispatch.dispatch_fix_max_age_s == 120
    for bad in ({"road_end_snap_m": -1}, {"dispatch_fix_max_age_s": 0}, {"dispatch_busy_window_h": 0},
                {"dispatch_escalation_interval_s": 0}, {"dispatch_drive_kmh": 0}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            DispatchSettings(**bad)
    with pytest.raises(ValidationError, match="must not exceed dispatch_drive_kmh"):
        DispatchSettings(dispatch_walk_kmh=25, dispatch_drive_kmh=10)
    with pytest.raises(ConfigError, match="ONEMAP_ROAD_END_SNAP_M=100"):
        load_settings(road_end_snap_m=100)
