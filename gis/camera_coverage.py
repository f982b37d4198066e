"""Camera coverage gaps (issue 16): what the cameras see of the main roads and the event hot
spots, and where new cameras would add most.

Each camera's visible ground is cached in ``camera_viewsheds`` (migration 0009_civil:
``camera_viewshed_geom()``, buildings occluding in 3D; rebuilt by a trigger when a camera moves
or turns, and by :func:`rebuild` after loads). :func:`coverage` answers
``GET /analytics/camera-coverage``: per community the share of main-road length seen by at least
one camera, the hot-spot cells (Getis-Ord Gi*, :func:`gis.analytics.event_hotspots`) mostly
unseen, and candidate sites ranked greedily: candidates are points every ``spacing_m`` along the
main roads with a camera of a given model (default a 360° dome 6 m up, range 60 m); each step
takes the candidate whose viewshed adds the most score = newly seen main-road metres +
``hotspot_weight_m`` x sum over unseen hot-spot cells of gi_z x the share of the cell newly seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import shapely
from sqlalchemy import Connection

from gis import analytics
from gis.sqlfiles import sql

MAIN_CLASSES = ("primary", "secondary")
HOTSPOT_Z = 1.96  # two-sided 5 %


@dataclass(frozen=True)
class CameraModel:
    mount_m: float = 6.0
    heading: float = 0.0
    hfov: float = 360.0
    pitch: float | None = None
    vfov: float | None = None
    range_m: float = 60.0


def rebuild(conn: Connection) -> int:
    """Recompute every camera's viewshed (after loading buildings or cameras)."""
    return int(conn.execute(sql("camera_coverage/rebuild")).scalar_one())


def road_coverage(conn: Connection, classes: tuple[str, ...] = MAIN_CLASSES, only_online: bool = False) -> list[dict]:
    rows = conn.execute(sql("camera_coverage/roads"), {"classes": list(classes), "only_online": only_online}).mappings()
    out = []
    for r in rows:
        total, seen = float(r["main_road_m"]), float(r["covered_m"])
        out.append({"community_id": r["community_id"], "name": r["name"], "main_road_m": round(total, 2),
                    "covered_m": round(seen, 2), "share": round(seen / total, 6) if total > 0 else None})
    return out


def hotspot_cells(conn: Connection, start: datetime, end: datetime, size_m: float, only_online: bool,
                  categories: list[str] | None = None) -> list[dict[str, Any]]:
    """Hot-spot cells (gi_z >= 1.96) with the share of their area the cameras see."""
    fc = analytics.event_hotspots(conn, start, end, categories, "square", size_m)
    hot = [{"id": str(f["id"]), "gi_z": f["properties"]["gi_z"], "geometry": f["geometry"]}
           for f in fc["features"] if (f["properties"].get("gi_z") or 0) >= HOTSPOT_Z]
    if not hot:
        return []
    rows = conn.execute(sql("camera_coverage/cells"), {"cells": json.dumps(hot), "only_online": only_online}).mappings()
    geoms = {h["id"]: h["geometry"] for h in hot}
    return [{"cell_id": r["id"], "gi_z": float(r["gi_z"]), "area_m2": round(float(r["area_m2"]), 1),
             "seen_share": round(float(r["seen_share"] or 0.0), 6), "geometry": geoms[r["id"]],
             "_g": shapely.from_wkb(bytes(r["wkb"]))} for r in rows]


def greedy_sites(roads: Any, cells: list[tuple[Any, float]], candidates: list[dict[str, Any]], n: int,
                 hotspot_weight_m: float) -> list[dict[str, Any]]:
    """Greedy maximal coverage: ``roads`` the unseen main roads (shapely, metres), ``cells``
    (unseen part of a hot-spot cell, gi_z x / full cell area) pairs, ``candidates`` with ``_g``
    their viewshed. Returns up to ``n`` picks in order with their gains (ties: lower ``n`` first)."""
    picks = []
    left = [c for c in candidates if c["_g"] is not None and not c["_g"].is_empty]
    for rank in range(1, n + 1):
        best, best_key = None, None
        for c in left:
            road_m = roads.intersection(c["_g"]).length if roads is not None and not roads.is_empty else 0.0
            hot = sum(w * part.intersection(c["_g"]).area for part, w in cells if not part.is_empty)
            score = road_m + hotspot_weight_m * hot
            key = (-round(score, 6), c["n"])
            if best_key is None or key < best_key:
                best, best_key = (c, road_m, hot, score), key
        if best is None or best[3] <= 1e-9:
            break
        c, road_m, hot, score = best
        picks.append({"rank": rank, "road_id": c["road_id"], "lon": c["lon"], "lat": c["lat"],
                      "new_road_m": round(road_m, 2), "new_hotspot": round(hot, 6), "score": round(score, 3)})
        if roads is not None:
            roads = roads.difference(c["_g"])
        cells = [(part.difference(c["_g"]), w) for part, w in cells]
        left = [x for x in left if x is not c]
    return picks


def coverage(conn: Connection, start: datetime, end: datetime, *, classes: tuple[str, ...] = MAIN_CLASSES,
             only_online: bool = False, cell_m: float = 250.0, seen_below: float = 0.5, sites: int = 5,
             spacing_m: float = 50.0, model: CameraModel = CameraModel(), hotspot_weight_m: float = 100.0,
             categories: list[str] | None = None) -> dict[str, Any]:
    """The answer of ``GET /analytics/camera-coverage`` (see the module docstring)."""
    per_comm = road_coverage(conn, classes, only_online)
    total = sum(r["main_road_m"] for r in per_comm)
    seen = sum(r["covered_m"] for r in per_comm)
    cells = hotspot_cells(conn, start, end, cell_m, only_online, categories)
    unseen_cells = [c for c in cells if c["seen_share"] < seen_below]
    u = conn.execute(sql("camera_coverage/uncovered"), {"classes": list(classes), "only_online": only_online}).one()
    roads = shapely.from_wkb(bytes(u.roads_wkb)) if u.roads_wkb is not None else None
    seen_g = shapely.from_wkb(bytes(u.seen_wkb)) if u.seen_wkb is not None else None
    cell_parts = []
    for c in unseen_cells:
        part = c["_g"].difference(seen_g) if seen_g is not None else c["_g"]
        cell_parts.append((part, c["gi_z"] / c["_g"].area))
    picks: list[dict[str, Any]] = []
    if sites > 0:
        cand = [dict(r) | {"_g": shapely.from_wkb(bytes(r["wkb"])) if r["wkb"] is not None else None}
                for r in conn.execute(sql("camera_coverage/candidates"), {
                    "classes": list(classes), "spacing": spacing_m, "mount": model.mount_m, "heading": model.heading,
                    "hfov": model.hfov, "pitch": model.pitch, "vfov": model.vfov, "range": model.range_m}).mappings()]
        picks = greedy_sites(roads, cell_parts, cand, sites, hotspot_weight_m)
    return {
        "main_road_classes": list(classes), "only_online": only_online,
        "main_road_m": round(total, 2), "covered_m": round(seen, 2),
        "share": round(seen / total, 6) if total > 0 else None,
        "communities": per_comm,
        "uncovered_hotspots": {"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": c["cell_id"], "geometry": c["geometry"],
             "properties": {"gi_z": c["gi_z"], "area_m2": c["area_m2"], "seen_share": c["seen_share"]}}
            for c in unseen_cells]},
        "hotspot_cells": len(cells),
        "candidate_model": model.__dict__, "sites": picks,
    }


def viewsheds(conn: Connection, only_online: bool = False) -> dict[str, Any]:
    """The cached viewsheds as a GeoJSON FeatureCollection (the viewer's camera-gap layer)."""
    rows = conn.execute(sql("camera_coverage/viewsheds"), {"only_online": only_online}).mappings()
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": r["camera_id"], "geometry": r["geometry"],
         "properties": {"camera_id": r["camera_id"], "name": r["name"], "kind": r["kind"], "status": r["status"],
                        "area_m2": float(r["area_m2"])}} for r in rows]}
