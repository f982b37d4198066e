"""The road graph (pgRouting) and road-network legs to a point.

The graph (``road_vertices``, ``road_edges``; migration ``0005_dispatch``) is built from the roads
layer by the database function ``road_graph_rebuild()`` (migration ``0008_road_snap``): road ends
closer than ``road_end_snap_m`` (setting, 2 m) to another end or road joined first, then lines
split at every crossing of two at-grade roads (``ST_Node``), at those junctions and at bridge
ends, vertices where piece ends meet (1 cm snap), cost
in seconds per mode from ``road_speed`` (``walk`` for grid workers, ``drive`` for vehicles),
length in metres. The roads loader rebuilds it in its own transaction, so readers see the old
graph until the new roads commit. Shortest paths: ``pgr_dijkstra`` (undirected) from the vertex
nearest each start to the vertex nearest the target (``road_route_costs()``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, text

from core.settings import DispatchSettings, get_settings
from gis.sqlfiles import sql

#: road_graph_rebuild(end snap m, default walk km/h, default drive km/h)
REBUILD_SQL = "SELECT road_graph_rebuild(%s, %s, %s)"

Mode = Literal["walk", "drive"]


def mode_for_kind(kind: str | None) -> Mode:
    """Vehicles drive; grid workers (and anything else) walk."""
    return "drive" if kind == "vehicle" else "walk"


def rebuild_params(settings: DispatchSettings | None = None) -> tuple[float, float, float]:
    """``(road_end_snap_m, dispatch_walk_kmh, dispatch_drive_kmh)`` for ``road_graph_rebuild``."""
    d = settings or get_settings().dispatch
    return (d.road_end_snap_m, d.dispatch_walk_kmh, d.dispatch_drive_kmh)


def rebuild_graph(conn: Connection, settings: DispatchSettings | None = None) -> int:
    """Rebuild the graph from ``roads`` (as the schema owner) with the dispatch settings; the
    number of edges."""
    snap_m, walk_kmh, drive_kmh = rebuild_params(settings)
    return int(conn.execute(text("SELECT road_graph_rebuild(:snap, :walk, :drive)"),
                            {"snap": snap_m, "walk": walk_kmh, "drive": drive_kmh}).scalar_one())


def _plain(v: Any) -> Any:
    return float(v) if isinstance(v, Decimal) else v


def network_legs(
    conn: Connection, lon: float, lat: float, candidates: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Road-network legs from each candidate (``{id, lon, lat, mode}``, EPSG:4490) to (lon, lat):
    ``{id: {from_vertex, to_vertex, network_m, eta_s, access_m, route}}`` where ``network_m`` /
    ``eta_s`` run along the graph between the nearest vertices (None when unreachable) and
    ``route`` is a GeoJSON LineString from the candidate to the target (None when unreachable)."""
    cands = [{"id": str(c["id"]), "lon": float(c["lon"]), "lat": float(c["lat"]), "mode": c["mode"]}
             for c in candidates]
    if not cands:
        return {}
    rows = conn.execute(sql("dispatch/network_legs"),
                        {"lon": float(lon), "lat": float(lat), "cands": json.dumps(cands)}).mappings().all()
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        leg = {k: _plain(v) for k, v in r.items() if k != "id"}
        leg["route"] = json.loads(leg["route"]) if leg["route"] else None
        out[r["id"]] = leg
    return out


def add_network(
    conn: Connection, lon: float, lat: float, workers: list[dict[str, Any]], by: Literal["network", "straight"],
    n: int | None = None,
) -> list[dict[str, Any]]:
    """Workers (rows with ``worker_id``, ``kind``, ``lon``, ``lat``) with ``network_m``, ``eta_s``,
    ``route`` added. ``by="network"``: ordered by network distance (unreachable last, then by
    straight distance); ``"straight"``: the given order. The first ``n`` (all when None)."""
    legs = network_legs(conn, lon, lat, (
        {"id": w["worker_id"], "lon": w["lon"], "lat": w["lat"], "mode": mode_for_kind(w.get("kind"))}
        for w in workers))
    out = []
    for w in workers:
        leg = legs.get(w["worker_id"], {})
        out.append({**w, "network_m": leg.get("network_m"), "eta_s": leg.get("eta_s"), "route": leg.get("route")})
    if by == "network":
        out.sort(key=lambda w: (w["network_m"] is None, w["network_m"] or 0.0, w.get("distance_m") or 0.0))
    return out if n is None else out[:n]
