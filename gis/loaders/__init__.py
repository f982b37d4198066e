"""Loaders: deliveries (files) -> PostGIS overlay tables, with a report of every rejected row.

``load_layer`` loads one layer in its own transaction; ``load_sample`` loads a whole sample
delivery (``DIR/clean``) in dependency order and derives tracks, check-ins and alarms.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from core.errors import InputError
from gis.loaders.civil import load_care_households, load_care_visits, load_surveys, rebuild_viewsheds
from gis.loaders.dem import load_dem
from gis.loaders.derive import derive_all
from gis.loaders.events import load_events
from gis.loaders.facilities import load_facilities
from gis.loaders.gps import load_gps
from gis.loaders.io import Mapping, refuse_empty
from gis.loaders.population import POPULATION_LAYERS, load_population, refresh_suppression
from gis.loaders.reference import (
    load_buildings,
    load_cameras,
    load_checkpoints,
    load_communities,
    load_geofences,
    load_grid_cells,
    load_roads,
    load_workers,
)
from gis.loaders.report import LayerReport, LoadReport

log = logging.getLogger(__name__)

__all__ = ["LAYERS", "LoadReport", "Mapping", "connect", "load_layer", "load_sample", "refresh_statistics"]

Loader = Callable[..., LayerReport]

#: layer name -> (loader, file name in a sample delivery's clean/ folder), in dependency order
LAYERS: dict[str, tuple[Loader, str]] = {
    "dem": (load_dem, "dem.tif"),
    "communities": (load_communities, "communities.gpkg"),
    "grid_cells": (load_grid_cells, "grid_cells.gpkg"),
    "buildings": (load_buildings, "buildings.gpkg"),
    "roads": (load_roads, "roads.gpkg"),
    "facilities": (load_facilities, "facilities.gpkg"),
    "workers": (load_workers, "workers.csv"),
    "cameras": (load_cameras, "cameras.gpkg"),
    "checkpoints": (load_checkpoints, "checkpoints.gpkg"),
    "geofences": (load_geofences, "geofences.gpkg"),
    "events": (load_events, "events.csv"),
    "population": (load_population, "population.csv"),
    "gps": (load_gps, "gps_fixes"),  # a folder of month files; older deliveries: gps_fixes.parquet
    "surveys": (load_surveys, "surveys.csv"),
    "care_households": (load_care_households, "care_households.csv"),
    "care_visits": (load_care_visits, "care_visits.csv"),
}
#: older sample layouts still read: layer -> file name used when the LAYERS one is absent
LEGACY_FILES = {"gps": "gps_fixes.parquet"}

#: the table a layer replaces (when not named like the layer)
LAYER_TABLES = {"population": "restricted.persons", "gps": "gps_fixes", "care_households": "restricted.care_households",
                "care_visits": "restricted.care_visits"}
#: layers after which every camera's viewshed is rebuilt, buildings occluding
#: (a camera's own row is rebuilt by the trigger cameras_viewshed_aiu; buildings need a rebuild)
VIEWSHED_LAYERS = ("buildings",)

#: everything `load sample` replaces (event_category / event_transition are reference data)
SAMPLE_TABLES = (
    "restricted.care_visits", "restricted.care_households", "surveys", "camera_viewsheds",
    "alarms", "alarm_watermark", "alarm_live_state", "checkins", "shift_tracks", "worker_positions", "gps_fixes",
    "event_status_history", "events", "restricted.persons", "geofences", "checkpoints", "cameras",
    "devices", "workers", "road_edges", "road_vertices", "roads", "facilities", "buildings", "grid_cells",
    "communities",
)  # fmt: skip


def connect(url: str | None = None) -> psycopg.Connection:
    """A psycopg connection to the onemap database (``gis.db.libpq_url()`` unless given)."""
    if url is None:
        from gis.db import libpq_url

        url = libpq_url()
    return psycopg.connect(url)


def load_layer(
    layer: str,
    path: Path,
    *,
    mapping: Path | None = None,
    url: str | None = None,
    encoding: str | None = None,
    src_crs: str | None = None,
    layer_name: str | None = None,
    allow_empty: bool = False,
    **options: Any,
) -> LoadReport:
    """Load one layer in one transaction (all or nothing). ``options`` go to the layer's loader
    (``boundary`` for buildings, ``replace``/``limit`` for gps); ``encoding``/``src_crs``/
    ``layer_name`` are the reading options of the delivery (``--encoding``, ``--src-crs``,
    ``--layer``). A delivery with no valid row would replace a live table with nothing: it is
    refused (:class:`~core.delivery.errors.NothingAcceptedError`, nothing changed) unless
    ``allow_empty`` (appending GPS fixes never empties anything)."""
    if layer not in LAYERS:
        raise InputError(f"unknown layer {layer!r}; known: {', '.join(LAYERS)}")
    loader, _ = LAYERS[layer]
    report = LoadReport()
    read_options = Mapping.load(mapping, option_encoding=encoding, src_crs=src_crs, option_layer=layer_name,
                                allow_empty=allow_empty)
    with connect(url) as conn:
        layer_report = report.add(loader(conn, Path(path), read_options, **options))
        appending = layer == "gps" and not options.get("replace")
        if layer_report.loaded == 0 and not allow_empty and not appending:
            refuse_empty(layer_report, read_options, 0, LAYER_TABLES.get(layer, layer))
        if layer == "grid_cells":
            from gis.loaders.reference import assign_buildings

            assign_buildings(conn)
        if layer in VIEWSHED_LAYERS:
            layer_report.note(f"{rebuild_viewsheds(conn)} camera viewsheds rebuilt")
        if layer in POPULATION_LAYERS:
            layer_report.note(f"population suppression refreshed ({refresh_suppression(conn)} counts hidden)")
        conn.commit()
        refresh_statistics(conn, vacuum=("events",) if layer == "events" else ())
    return report


def refresh_statistics(conn: psycopg.Connection, vacuum: tuple[str, ...] = ("events",)) -> None:
    """After a committed bulk load: ANALYZE everything and VACUUM the ``vacuum`` tables, whose
    visibility map the time-window analytics need for index-only scans (autovacuum would get
    there too, minutes later)."""
    conn.autocommit = True
    for table in vacuum:
        conn.execute(f"VACUUM (ANALYZE) {table}")  # noqa: S608 - loader constants
    conn.execute("ANALYZE")


def sample_clean_dir(directory: Path) -> Path:
    directory = Path(directory)
    clean = directory / "clean"
    if clean.is_dir():
        return clean
    if (directory / "buildings.gpkg").exists():
        return directory
    raise FileNotFoundError(f"{directory}: no clean/ folder of a sample delivery (see docs/sample-delivery.md)")


def load_sample(
    directory: Path, *, url: str | None = None, gps_limit: int | None = None, derive: bool = True
) -> LoadReport:
    """Replace every overlay table with the sample delivery in ``directory`` (or its ``clean/``).

    One transaction: a failure leaves the previous contents untouched. ``gps_limit`` loads only the
    first N fixes (tests, quick demos).
    """
    clean = sample_clean_dir(directory)
    boundary = clean / "boundary.gpkg"
    report = LoadReport()
    with connect(url) as conn:
        conn.execute("SELECT set_config('onemap.quiet', 'on', true)")
        conn.execute(f"TRUNCATE {', '.join(SAMPLE_TABLES)}")  # noqa: S608 - constant list
        # one viewshed rebuild after every layer, not one per inserted camera (rolled back on failure)
        conn.execute("ALTER TABLE cameras DISABLE TRIGGER cameras_viewshed_aiu")
        for layer, (loader, file_name) in LAYERS.items():
            path = clean / file_name
            if not path.exists() and layer in LEGACY_FILES:
                path = clean / LEGACY_FILES[layer]
            if not path.exists():
                log.warning("%s: %s missing, layer %s skipped", clean, file_name, layer)
                continue
            options: dict[str, Any] = {}
            if layer == "buildings" and boundary.exists():
                options["boundary"] = boundary
            if layer == "gps":
                options = {"limit": gps_limit}
            log.info("loading %s from %s", layer, path)
            report.add(loader(conn, path, Mapping(), **options))
        conn.execute("ALTER TABLE cameras ENABLE TRIGGER cameras_viewshed_aiu")
        t0 = time.perf_counter()
        report.derived["camera_viewsheds"] = rebuild_viewsheds(conn)
        report.derived["camera_viewsheds_seconds"] = round(time.perf_counter() - t0, 1)
        if derive:
            t0 = time.perf_counter()
            report.derived |= derive_all(conn)
            report.derived["seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        report.derived["population_hidden"] = refresh_suppression(conn)
        report.derived["population_hidden_seconds"] = round(time.perf_counter() - t0, 1)
        conn.execute("SELECT set_config('onemap.quiet', 'off', true)")
        conn.commit()
        refresh_statistics(conn)
    return report
