"""Reference layers: communities, grid cells, buildings, roads, cameras, checkpoints, geofences, workers.

Each loader replaces its layer (upsert by id, then delete ids the delivery no longer has; rows of
other tables that pointed at deleted ids get NULL, see docs/postgis.md "Reloading").
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg

from core.delivery import rules
from core.delivery.read import FieldSpec
from gis import routing
from gis.loaders import io
from gis.loaders.db import Upserted, ids_in, stage, upsert_from_stage
from gis.loaders.io import Mapping
from gis.loaders.report import LayerReport

log = logging.getLogger(__name__)

GEOM_4490 = "ST_SetSRID(ST_GeomFromWKB(decode(s.wkb, 'hex')), 4490)"
BUILDING_USES = (
    "residential",
    "commercial",
    "office",
    "school",
    "hospital",
    "market",
    "public",
    "industrial",
    "courtyard_house",
)
ROOF_TYPES = ("flat", "gable", "hip")


def _attrs_json(df: pd.DataFrame, known: set[str]) -> pd.Series:
    """Delivered fields the schema has no column for, kept in ``attrs`` (jsonb)."""
    extra = [c for c in df.columns if c not in known and c != "geometry"]
    if not extra:
        return pd.Series(["{}"] * len(df), index=df.index)
    sub = df[extra].astype(object).where(df[extra].notna(), None)
    return pd.Series([json.dumps(r, ensure_ascii=False, default=str) for r in sub.to_dict("records")], index=df.index)


def _specs(required: tuple[str, ...], optional: dict[str, str]) -> list[FieldSpec]:
    kinds = {"f": "float", "i": "int", "s": "str"}
    out = [FieldSpec(name, kinds[optional.get(name, "s")], required=True) for name in required]
    out += [FieldSpec(name, kinds[k]) for name, k in optional.items() if name not in required]
    return out


SPECS: dict[str, list[FieldSpec]] = {
    "communities": _specs(("id", "name"), {}),
    "grid_cells": _specs(("id", "name"), {"community_id": "s", "staff_id": "s", "staff_name": "s", "staff_phone": "s"}),
    "buildings": _specs(
        ("id",),
        {"name": "s", "floors": "f", "height": "f", "use": "s", "roof_type": "s", "community": "s", "compound": "s"},
    ),
    "roads": _specs(
        ("id",), {"name": "s", "class": "s", "width": "f", "lanes": "i", "bridge": "i", "deck_height": "f"}
    ),
    "cameras": _specs(
        ("id", "kind", "mount_height", "heading", "hfov", "range_m"),
        {
            "name": "s",
            "mount_height": "f",
            "heading": "f",
            "pitch": "f",
            "hfov": "f",
            "range_m": "f",
            "stream_url": "s",
            "status": "s",
        },
    ),
    "checkpoints": _specs(("id", "radius_m"), {"name": "s", "grid_id": "s", "radius_m": "f"}),
    "geofences": _specs(("id", "kind"), {"name": "s", "worker_id": "s", "max_dwell_min": "f"}),
}


def _vector_prelude(
    path: Path,
    layer: str,
    mapping: Mapping,
    kind: str,
    required: tuple[str, ...] = ("id",),
    *,
    compare: tuple[str, ...] | None = None,
    boundary: Path | None = None,
) -> tuple[gpd.GeoDataFrame, LayerReport]:
    """Read and clean with the delivery layer's rules (``core.delivery``), as the tiles do."""
    report = LayerReport(layer=layer, source=str(path))
    gdf = io.read_vector(path, mapping, report, SPECS[layer], kind, compare=compare, boundary=boundary)
    io.require_columns(gdf, required, path)
    return gdf, report


def report_column(report: LayerReport, gdf: gpd.GeoDataFrame, col: str) -> np.ndarray:
    """A float column of ``gdf`` spread over every source row of ``report`` (NaN elsewhere)."""
    out = np.full(report.n_input, np.nan)
    out[gdf.index.to_numpy()] = gdf[col].to_numpy(dtype=float, na_value=np.nan)
    return out


def _rejected_ids(report: LayerReport, staged: pd.DataFrame) -> list[str]:
    """Ids the delivery has but rejected: their previously loaded rows are kept, not deleted."""
    return sorted({r.feature_id for r in report.rejects if r.feature_id} - set(staged["id"]))


def _replace_layer(
    conn: psycopg.Connection,
    report: LayerReport,
    table: str,
    columns: list[str],
    staged: pd.DataFrame,
    keep: list[str] | None = None,
    **kw: object,
) -> Upserted:
    """Upsert ``stg_<table>`` (``columns`` + ``wkb``) into ``table`` by id and delete the ids the delivery
    no longer has, except the rejected ones (``keep``, by default :func:`_rejected_ids`)."""
    return upsert_from_stage(
        conn,
        table,
        f"stg_{table}",
        [*columns, "geom"],
        [f"s.{c}" for c in columns] + [GEOM_4490],
        keep=_rejected_ids(report, staged) if keep is None else keep,
        **kw,
    )


def _finish(conn: psycopg.Connection, report: LayerReport, t0: float, result: Upserted) -> LayerReport:
    report.finish(result.upserted)
    if result.deleted:
        report.note(f"{result.deleted} rows not in this delivery were deleted")
    report.seconds = time.perf_counter() - t0
    return report


def load_communities(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    gdf, report = _vector_prelude(path, "communities", mapping, "polygon", ("id", "name"))
    gdf = io.check_required(gdf, report, "name")
    df = pd.DataFrame(
        {
            "id": gdf["id"],
            "name": io.text_or_none(gdf["name"]),
            "attrs": _attrs_json(gdf, {"id", "name"}),
            "wkb": io.wkb_hex_4490(gdf.geometry),
        }
    )
    stage(conn, "stg_communities", {"id": "text", "name": "text", "attrs": "jsonb", "wkb": "text"}, df)
    result = _replace_layer(conn, report, "communities", ["id", "name", "attrs"], df)
    return _finish(conn, report, t0, result)


def load_grid_cells(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    gdf, report = _vector_prelude(path, "grid_cells", mapping, "polygon", ("id", "name"))
    gdf = io.check_required(gdf, report, "name")
    for c in ("community_id", "staff_id", "staff_name", "staff_phone"):
        gdf[c] = io.text_or_none(gdf[c]) if c in gdf.columns else None
    communities = ids_in(conn, "communities")
    gdf = io.check_enum(gdf, report, "community_id", communities, required=False, reason="unknown_reference")
    known = {"id", "name", "community_id", "staff_id", "staff_name", "staff_phone"}
    df = pd.DataFrame({c: gdf[c] for c in sorted(known)})
    df["attrs"] = _attrs_json(gdf, known)
    df["wkb"] = io.wkb_hex_4490(gdf.geometry)
    cols = {c: "text" for c in sorted(known)} | {"attrs": "jsonb", "wkb": "text"}
    stage(conn, "stg_grid_cells", cols, df)
    result = _replace_layer(conn, report, "grid_cells", [*sorted(known), "attrs"], df)
    return _finish(conn, report, t0, result)


def load_buildings(
    conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping(), boundary: Path | None = None
) -> LayerReport:
    """Buildings keep the delivered ``id`` (the id the 3D tiles carry)."""
    t0 = time.perf_counter()
    # the tiles compare the building fields they read (not ``compound``): same duplicates here
    gdf, report = _vector_prelude(path, "buildings", mapping, "polygon",
                                  compare=("name", "floors", "height", "use", "roof_type", "community"),
                                  boundary=boundary)
    alive = rules.check_building_heights(
        report, report_column(report, gdf, "floors"), report_column(report, gdf, "height"),
        ~report.rejected_mask())
    gdf = gdf[alive[gdf.index.to_numpy()]]
    io.refuse_empty(report, mapping, len(gdf), "buildings")
    known = {"id", "name", "floors", "height", "use", "roof_type", "community", "compound"}
    df = pd.DataFrame({"id": gdf["id"]})
    for c in ("name", "use", "roof_type", "compound"):
        df[c] = io.text_or_none(gdf[c]) if c in gdf.columns else None
    df["community_declared"] = io.text_or_none(gdf["community"]) if "community" in gdf.columns else None
    df["floors"] = gdf["floors"]
    df["height"] = gdf["height"]
    unknown_use = df["use"].notna() & ~df["use"].isin(BUILDING_USES)
    if unknown_use.any():
        report.note(
            f"{int(unknown_use.sum())} buildings have a use outside {', '.join(BUILDING_USES)} "
            f"(kept as delivered): {sorted(df.loc[unknown_use, 'use'].unique())[:5]}"
        )
    df["attrs"] = _attrs_json(gdf, known)
    df["wkb"] = io.wkb_hex_4490(gdf.geometry)
    cols = {
        "id": "text",
        "name": "text",
        "use": "text",
        "roof_type": "text",
        "compound": "text",
        "community_declared": "text",
        "floors": "double precision",  # fractional floors (3.5) are accepted; the column rounds them
        "height": "double precision",
        "attrs": "jsonb",
        "wkb": "text",
    }
    stage(conn, "stg_buildings", cols, df)
    target = ["id", "name", "use", "roof_type", "compound", "community_declared", "floors", "height", "attrs"]
    rejected_ids = _rejected_ids(report, df)
    result = _replace_layer(
        conn,
        report,
        "buildings",
        target,
        df,
        keep=rejected_ids,
        keep_referenced_by=("restricted", "persons", "building_id"),
    )
    if rejected_ids:
        report.note(f"{len(rejected_ids)} rejected buildings keep their previously loaded version, if any")
    if result.kept_referenced:
        report.note(
            f"{result.kept_referenced} buildings absent from this delivery were kept: population records "
            "still reference them (reload population, then buildings, to remove them)"
        )
    assign_buildings(conn)
    return _finish(conn, report, t0, result)


def assign_buildings(conn: psycopg.Connection) -> None:
    """grid_id / community_id of every building from the cell containing its point-on-surface."""
    conn.execute("""
        UPDATE buildings b SET grid_id = l.grid_id, community_id = l.community_id
          FROM (SELECT b2.id,
                       (SELECT g.id FROM grid_cells g WHERE ST_Intersects(g.geom_4548, p.pt)
                         ORDER BY g.id LIMIT 1) AS grid_id,
                       COALESCE((SELECT c.id FROM communities c WHERE ST_Intersects(c.geom_4548, p.pt)
                                  ORDER BY c.id LIMIT 1),
                                (SELECT g.community_id FROM grid_cells g
                                  WHERE ST_Intersects(g.geom_4548, p.pt)
                                  ORDER BY g.id LIMIT 1)) AS community_id
                  FROM buildings b2 CROSS JOIN LATERAL (SELECT ST_PointOnSurface(b2.geom_4548) AS pt) p) l
         WHERE l.id = b.id
           AND (b.grid_id IS DISTINCT FROM l.grid_id OR b.community_id IS DISTINCT FROM l.community_id)
    """)


def load_roads(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    gdf, report = _vector_prelude(path, "roads", mapping, "line")
    gdf = io.check_numeric(gdf, report, "width", lo=0, hi=200)
    gdf = io.check_numeric(gdf, report, "lanes", lo=0, hi=20, integer=True)
    gdf = io.check_numeric(gdf, report, "deck_height", lo=0, hi=200)
    gdf = io.check_numeric(gdf, report, "bridge", lo=0, hi=1, integer=True)
    known = {"id", "name", "class", "width", "lanes", "bridge", "deck_height"}
    df = pd.DataFrame({"id": gdf["id"]})
    for c in ("name", "class"):
        df[c] = io.text_or_none(gdf[c]) if c in gdf.columns else None
    df["width"] = gdf["width"]
    df["lanes"] = gdf["lanes"]
    df["deck_height"] = gdf["deck_height"]
    df["bridge"] = gdf["bridge"].fillna(0).astype(int) == 1
    df["attrs"] = _attrs_json(gdf, known)
    df["wkb"] = io.wkb_hex_4490(gdf.geometry)
    cols = {
        "id": "text",
        "name": "text",
        "class": "text",
        "width": "double precision",
        "lanes": "integer",
        "deck_height": "double precision",
        "bridge": "boolean",
        "attrs": "jsonb",
        "wkb": "text",
    }
    stage(conn, "stg_roads", cols, df)
    target = ["id", "name", "class", "width", "lanes", "deck_height", "bridge", "attrs"]
    result = _replace_layer(conn, report, "roads", target, df)
    # the road graph (pgRouting, migrations 0005_dispatch/0008_road_snap) follows the layer in the
    # same transaction, road ends snapped within the setting road_end_snap_m
    edges = conn.execute(routing.REBUILD_SQL, routing.rebuild_params()).fetchone()
    report.note(f"road graph: {edges[0] if edges else 0} edges")
    return _finish(conn, report, t0, result)


def load_cameras(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    gdf, report = _vector_prelude(
        path, "cameras", mapping, "point", ("id", "kind", "mount_height", "heading", "hfov", "range_m")
    )
    gdf = io.check_enum(gdf, report, "kind", ("street", "high_altitude"))
    gdf = io.check_numeric(gdf, report, "mount_height", lo=0, hi=1000, required=True)
    gdf = io.check_numeric(gdf, report, "heading", lo=-360, hi=720, required=True)
    gdf = io.check_numeric(gdf, report, "pitch", lo=-90, hi=90)
    gdf = io.check_numeric(gdf, report, "hfov", lo=0, hi=360, lo_open=True, required=True)
    gdf = io.check_numeric(gdf, report, "range_m", lo=0, hi=20_000, lo_open=True, required=True)
    if "status" not in gdf.columns:
        gdf["status"] = "online"
    gdf["status"] = gdf["status"].fillna("online")
    gdf = io.check_enum(gdf, report, "status", ("online", "offline"))
    known = {
        "id",
        "name",
        "kind",
        "mount_height",
        "heading",
        "pitch",
        "hfov",
        "range_m",
        "stream_url",
        "status",
    }
    df = pd.DataFrame({"id": gdf["id"], "kind": gdf["kind"], "status": gdf["status"]})
    for c in ("name", "stream_url"):
        df[c] = io.text_or_none(gdf[c]) if c in gdf.columns else None
    for c in ("mount_height", "pitch", "hfov", "range_m"):
        df[c] = gdf[c]
    df["heading"] = np.mod(gdf["heading"].astype(float), 360.0)
    df["attrs"] = _attrs_json(gdf, known)
    df["wkb"] = io.wkb_hex_4490(gdf.geometry)
    num = "double precision"
    cols = {
        "id": "text",
        "kind": "text",
        "status": "text",
        "name": "text",
        "stream_url": "text",
        "mount_height": num,
        "pitch": num,
        "hfov": num,
        "range_m": num,
        "heading": num,
        "attrs": "jsonb",
        "wkb": "text",
    }
    stage(conn, "stg_cameras", cols, df)
    target = [
        "id",
        "kind",
        "status",
        "name",
        "stream_url",
        "mount_height",
        "pitch",
        "hfov",
        "range_m",
        "heading",
        "attrs",
    ]
    result = _replace_layer(conn, report, "cameras", target, df)
    return _finish(conn, report, t0, result)


def load_checkpoints(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    gdf, report = _vector_prelude(path, "checkpoints", mapping, "point", ("id", "radius_m"))
    gdf = io.check_numeric(gdf, report, "radius_m", lo=0, hi=1000, lo_open=True, required=True)
    gdf["grid_id"] = io.text_or_none(gdf["grid_id"]) if "grid_id" in gdf.columns else None
    gdf = io.check_enum(gdf, report, "grid_id", ids_in(conn, "grid_cells"), required=False, reason="unknown_reference")
    df = pd.DataFrame({"id": gdf["id"], "grid_id": gdf["grid_id"], "radius_m": gdf["radius_m"]})
    df["name"] = io.text_or_none(gdf["name"]) if "name" in gdf.columns else None
    df["wkb"] = io.wkb_hex_4490(gdf.geometry)
    stage(
        conn,
        "stg_checkpoints",
        {"id": "text", "grid_id": "text", "radius_m": "double precision", "name": "text", "wkb": "text"},
        df,
    )
    result = _replace_layer(conn, report, "checkpoints", ["id", "grid_id", "radius_m", "name"], df)
    return _finish(conn, report, t0, result)


def load_geofences(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    gdf, report = _vector_prelude(path, "geofences", mapping, "polygon", ("id", "kind"))
    gdf = io.check_enum(gdf, report, "kind", ("no_parking", "patrol_area"))
    gdf["worker_id"] = io.text_or_none(gdf["worker_id"]) if "worker_id" in gdf.columns else None
    gdf = io.check_enum(gdf, report, "worker_id", ids_in(conn, "workers"), required=False, reason="unknown_reference")
    gdf = report.reject_mask(
        gdf,
        ((gdf["kind"] == "patrol_area") & gdf["worker_id"].isna()).to_numpy(),
        "worker_id",
        "missing_value",
        "a patrol_area needs a worker_id",
    )
    gdf = io.check_numeric(gdf, report, "max_dwell_min", lo=0, hi=24 * 60, lo_open=True)
    df = pd.DataFrame(
        {
            "id": gdf["id"],
            "kind": gdf["kind"],
            "worker_id": gdf["worker_id"],
            "max_dwell_min": gdf["max_dwell_min"],
        }
    )
    df["name"] = io.text_or_none(gdf["name"]) if "name" in gdf.columns else None
    df["wkb"] = io.wkb_hex_4490(gdf.geometry)
    stage(
        conn,
        "stg_geofences",
        {
            "id": "text",
            "kind": "text",
            "worker_id": "text",
            "max_dwell_min": "double precision",
            "name": "text",
            "wkb": "text",
        },
        df,
    )
    target = ["id", "kind", "worker_id", "max_dwell_min", "name"]
    result = _replace_layer(conn, report, "geofences", target, df)
    return _finish(conn, report, t0, result)


def load_workers(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    """workers.csv -> workers + devices (one device per row's device_id)."""
    t0 = time.perf_counter()
    report = LayerReport(layer="workers", source=str(path))
    df = io.read_table(path, mapping, report)
    io.require_columns(df, ("id", "name", "kind"), path)
    df["id"] = io.text_or_none(df["id"])
    df = io.check_required(df, report, "id")
    df = io.check_unique(df, report, ["id"])
    df = io.check_required(df, report, "name")
    df = io.check_enum(df, report, "kind", ("grid_worker", "vehicle"))
    for c in ("phone", "device_id", "grid_id"):
        df[c] = io.text_or_none(df[c]) if c in df.columns else None
    df = io.check_enum(df, report, "grid_id", ids_in(conn, "grid_cells"), required=False, reason="unknown_reference")
    has_dev = df["device_id"].notna()
    dup_dev = has_dev & df["device_id"].duplicated(keep="first")
    df = report.reject_mask(
        df,
        dup_dev.to_numpy(),
        "device_id",
        "duplicate",
        lambda b: [f"device {d} already belongs to an earlier worker" for d in b["device_id"]],
        value_col="device_id",
    )
    out = df[["id", "name", "phone", "kind", "grid_id"]].copy()
    stage(conn, "stg_workers", {c: "text" for c in out.columns}, out)
    cols = list(out.columns)
    result = upsert_from_stage(
        conn, "workers", "stg_workers", cols, [f"s.{c}" for c in cols], keep=_rejected_ids(report, out)
    )
    devices = df.loc[df["device_id"].notna(), ["device_id", "id", "kind"]].rename(
        columns={"device_id": "id", "id": "worker_id"}
    )
    devices["kind"] = np.where(devices["kind"] == "vehicle", "vehicle_gps", "handheld_gps")
    stage(conn, "stg_devices", {"id": "text", "worker_id": "text", "kind": "text"}, devices)
    upsert_from_stage(conn, "devices", "stg_devices", ["id", "worker_id", "kind"], ["s.id", "s.worker_id", "s.kind"])
    report.note(f"{len(devices)} devices")
    return _finish(conn, report, t0, result)
