"""Care visits to vulnerable households (issue 16; migration 0009_civil).

Households (``restricted.care_households``: a pseudonymous id, the building, a category code
低保 ``dibao``, 特困 ``tekun``, 高龄 ``gaoling``, 残疾 ``canji``, 独居 ``dujv``, 困境儿童
``kunjing_ertong``, the visit interval in days, the assigned worker) are person-level: read only
as ``onemap_privileged`` (:func:`gis.dbroles.privileged_role`) in a privileged user's request, and
the caller audits every such read. Devices write visits through ``care_visit_record()``.
Planners get :func:`by_community` (suppressed counts).

A day's route (:func:`route`): the worker's households due by the end of the day, started at the
most overdue one and ordered nearest-neighbour by walking time over the road graph
(``pgr_dijkstraCostMatrix`` on ``road_edges.walk_s``; ties: the earlier due first); households
the graph cannot reach from the start come last, flagged ``unreachable``.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from core.errors import InputError, NotFoundError
from gis.dbroles import privileged_role
from gis.sqlfiles import sql

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
CATEGORIES = {"dibao": "低保", "tekun": "特困", "gaoling": "高龄", "canji": "残疾", "dujv": "独居",
              "kunjing_ertong": "困境儿童"}
OUTCOMES = ("visited", "not_home", "refused")


def worker_of_device(conn: Connection, device_id: str) -> str | None:
    return conn.execute(sql("care/worker_of_device"), {"device": device_id}).scalar()


def record_visit(conn: Connection, household_id: str, worker_id: str | None, device_id: str | None,
                 at: datetime, outcome: str = "visited", note: str | None = None) -> int:
    """Store one visit; NotFoundError for an unknown or inactive household."""
    if outcome not in OUTCOMES:
        raise InputError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    try:
        with conn.begin_nested():
            return int(conn.execute(sql("care/record"), {
                "household": household_id, "worker": worker_id, "device": device_id, "at": at,
                "outcome": outcome, "note": note}).scalar_one())
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "P0002":
            raise NotFoundError(f"unknown care household {household_id!r}") from exc
        raise


def _due(conn: Connection, worker: str | None, until: datetime) -> list[dict[str, Any]]:
    with privileged_role(conn):
        return [dict(r) for r in conn.execute(sql("care/due"), {"worker": worker, "until": until}).mappings()]


def overdue(conn: Connection, worker: str | None, at: datetime) -> list[dict[str, Any]]:
    """Person-level: households of ``worker`` overdue at ``at`` (most overdue first). Audit it."""
    out = []
    for r in _due(conn, worker, at):
        out.append({"household_id": r["household_id"], "building_id": r["building_id"],
                    "community_id": r["community_id"], "category": r["category"],
                    "category_zh": CATEGORIES.get(r["category"]), "interval_days": r["interval_days"],
                    "worker_id": r["worker_id"], "last_visit": r["last_visit"], "due_at": r["due_at"],
                    "days_overdue": round((at - r["due_at"]).total_seconds() / 86400, 2),
                    "lon": round(r["lon"], 7), "lat": round(r["lat"], 7)})
    return out


def nearest_neighbour(n: int, cost: dict[tuple[int, int], float]) -> tuple[list[int], list[int]]:
    """Order 0..n-1 starting at 0, always to the cheapest unvisited reachable stop (ties: lower
    index). Returns (order, unreachable)."""
    order, left = [0], list(range(1, n))
    while left:
        here = order[-1]
        reach = [(cost[(here, j)], j) for j in left if (here, j) in cost]
        if not reach:
            break
        _, nxt = min(reach)
        order.append(nxt)
        left.remove(nxt)
    return order, left


def route(conn: Connection, worker: str, day: date) -> dict[str, Any]:
    """Person-level: the day's visiting route of ``worker`` (see the module docstring). Audit it."""
    until = datetime.combine(day + timedelta(days=1), time(0), tzinfo=LOCAL_TZ)
    stops = _due(conn, worker, until)
    out: dict[str, Any] = {"worker_id": worker, "date": day.isoformat(), "stops": [], "unreachable": [],
                           "total_s": 0.0, "total_m": 0.0, "legs": {"type": "FeatureCollection", "features": []}}
    if not stops:
        return out
    verts = conn.execute(sql("care/nearest_vertices"), {
        "xs": [s["x"] for s in stops], "ys": [s["y"] for s in stops]}).mappings().all()
    if len(verts) != len(stops):
        raise NotFoundError("the road graph is empty: load roads first")
    vid = [int(v["vid"]) for v in verts]
    pairs = {(int(r["start_vid"]), int(r["end_vid"])): float(r["agg_cost"])
             for r in conn.execute(sql("care/cost_matrix"), {"vids": sorted(set(vid))}).mappings()}
    cost = {}
    for i in range(len(stops)):
        for j in range(len(stops)):
            if i != j:
                c = 0.0 if vid[i] == vid[j] else pairs.get((vid[i], vid[j]))
                if c is not None:
                    cost[(i, j)] = c
    order, unreachable = nearest_neighbour(len(stops), cost)
    for k, i in enumerate(order):
        s = stops[i]
        leg_s = 0.0 if k == 0 else cost[(order[k - 1], i)]
        out["stops"].append({"seq": k + 1, "household_id": s["household_id"], "building_id": s["building_id"],
                             "category": s["category"], "due_at": s["due_at"], "vertex": vid[i],
                             "leg_s": round(leg_s, 3), "lon": round(s["lon"], 7), "lat": round(s["lat"], 7)})
        out["total_s"] += leg_s
        if k > 0 and vid[order[k - 1]] != vid[i]:
            leg = conn.execute(sql("care/leg"), {"a": vid[order[k - 1]], "b": vid[i]}).mappings().first()
            if leg is not None:
                out["total_m"] += float(leg["network_m"])
                out["legs"]["features"].append({"type": "Feature", "geometry": leg["geometry"], "properties": {
                    "from": stops[order[k - 1]]["household_id"], "to": s["household_id"],
                    "m": round(float(leg["network_m"]), 2), "s": round(float(leg["eta_s"]), 2)}})
    out["unreachable"] = [stops[i]["household_id"] for i in unreachable]
    out["total_s"] = round(out["total_s"], 3)
    out["total_m"] = round(out["total_m"], 2)
    return out


def by_community(conn: Connection, at: datetime) -> list[dict[str, Any]]:
    """Suppressed counts for planners: per community (None: the district) and category ('*': all)
    the households and those overdue at ``at`` (NULL where fewer than 5 or isolable)."""
    return [dict(r) for r in conn.execute(sql("care/by_community"), {"at": at}).mappings()]
