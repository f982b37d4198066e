"""Walking access to facilities over the road graph (issue 16; migration ``0007_access``).

A resident's walk to a facility is: building (its point on surface) → the nearest graph vertex in
a straight line, along ``road_edges`` (``length_m``, undirected), → the facility's nearest vertex,
→ the facility in a straight line. The database computes the metres (``access_vertex_m``: one
``pgr_dijkstraCost`` from every facility vertex of a kind); times are metres / walking speed.

Speeds and thresholds are fixed (:data:`SPEEDS`, :data:`MINUTES`): counts of people within
arbitrary distances could be differenced into small groups, so the database suppresses the counts
of every published threshold together (``access_publish``). Planners get aggregates only:
per-community counts of residents, the 80+, the disabled and the low-income within 5/10/15 minutes
(suppressed like the population views), per-building times (no people), uncovered buildings, and
ranked candidate sites whose gains are rounded to 5.
"""

from __future__ import annotations

import json
from typing import Any, Final

from sqlalchemy import Connection, Engine

from gis.sqlfiles import sql

#: facility kinds (table ``facility_kind``)
KINDS: Final[tuple[str, ...]] = (
    "service_station", "service_terminal", "elderly_care", "clinic", "school", "police", "convenience_store",
)
#: walking speeds (m/s) published: elderly, default (the database's ``access_speeds()``)
SPEEDS: Final[tuple[float, ...]] = (0.8, 1.2)
DEFAULT_SPEED: Final[float] = 1.2
#: minutes thresholds published
MINUTES: Final[tuple[int, ...]] = (5, 10, 15)
GROUPS: Final[tuple[str, ...]] = ("total", "age_80_plus", "disabled", "low_income")


def _check(kind: str, speed: float, minutes: int | None = None) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if speed not in SPEEDS:
        raise ValueError(f"speed must be one of {', '.join(map(str, SPEEDS))} (m/s)")
    if minutes is not None and minutes not in MINUTES:
        raise ValueError(f"minutes must be one of {', '.join(map(str, MINUTES))}")


def _rows(conn: Connection | Engine, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return _rows(c, name, params)
    return [dict(r) for r in conn.execute(sql(name), params).mappings()]


def building_times(
    conn: Connection | Engine, kind: str, speed: float = DEFAULT_SPEED, community: str | None = None
) -> list[dict[str, Any]]:
    """Per building: ``building_id``, ``community_id``, the nearest ``facility_id`` of ``kind``,
    ``walk_m`` and ``walk_s`` (None when no facility is reachable)."""
    _check(kind, speed)
    rows = _rows(conn, "access/buildings", {"kind": kind, "community": community})
    for r in rows:
        r["walk_s"] = None if r["walk_m"] is None else r["walk_m"] / speed
    return rows


def community_access(
    conn: Connection | Engine, kind: str, speed: float = DEFAULT_SPEED, community: str | None = None
) -> list[dict[str, Any]]:
    """Per community and group (total, age_80_plus, disabled, low_income): ``residents`` and
    ``within_5``/``within_10``/``within_15`` (None when suppressed, named in ``suppressed``) and
    the shares ``share_5``… (within / residents, only when both are published)."""
    _check(kind, speed)
    rows = _rows(conn, "access/communities", {"kind": kind, "speed": speed, "community": community})
    for r in rows:
        r["suppressed"] = list(r["suppressed"] or [])
        for m in MINUTES:
            w, n = r[f"within_{m}"], r["residents"]
            r[f"share_{m}"] = round(w / n, 4) if w is not None and n else None
    return rows


def access(
    conn: Connection | Engine, kind: str, minutes: int = 15, speed: float = DEFAULT_SPEED,
    community: str | None = None, communities: bool = True,
) -> dict[str, Any]:
    """The answer of ``GET /analytics/access``: per-community suppressed figures (unless
    ``communities`` is false: they cost a pass of the population views' complementary
    suppression), per-building walking times and the buildings not within ``minutes``."""
    _check(kind, speed, minutes)
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return access(c, kind, minutes, speed, community, communities)
    times = building_times(conn, kind, speed, community)
    limit_s = minutes * 60
    uncovered = [t for t in times if t["walk_s"] is None or t["walk_s"] > limit_s]
    return {
        "kind": kind,
        "speed": speed,
        "minutes": minutes,
        "communities": community_access(conn, kind, speed, community) if communities else [],
        "buildings": [
            {"building_id": t["building_id"], "community_id": t["community_id"], "facility_id": t["facility_id"],
             "walk_m": _round(t["walk_m"], 1), "walk_min": _round(t["walk_s"] and t["walk_s"] / 60, 2)}
            for t in times
        ],
        "uncovered": [
            {"building_id": u["building_id"], "community_id": u["community_id"],
             "walk_min": _round(u["walk_s"] and u["walk_s"] / 60, 2)}
            for u in uncovered
        ],
    }


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(float(v), nd)


def sites(
    conn: Connection | Engine, kind: str, minutes: int = 15, speed: float = DEFAULT_SPEED, n: int = 5
) -> list[dict[str, Any]]:
    """Ranked candidate sites (graph vertices) for new facilities of ``kind``, greedy maximal
    coverage of the residents not yet within ``minutes``: ``rank``, ``vertex_id``, ``lon``,
    ``lat``, ``residents_added`` (rounded to 5), ``buildings_added``."""
    _check(kind, speed, minutes)
    if not 1 <= n <= 50:
        raise ValueError("n must be between 1 and 50")
    return _rows(conn, "access/sites", {"kind": kind, "speed": speed, "minutes": minutes, "n": n})


def isochrone_edges(conn: Connection | Engine, kind: str, speed: float = DEFAULT_SPEED) -> dict[str, Any]:
    """Road edges as GeoJSON with ``minutes``: the walking time from the nearest facility of
    ``kind`` to the edge's nearer end (None: unreachable), and ``band`` (5, 10, 15 or None
    beyond 15 minutes) for colouring isochrones."""
    _check(kind, speed)
    feats = []
    for r in _rows(conn, "access/edges", {"kind": kind}):
        ends = [m for m in (r["source_m"], r["target_m"]) if m is not None]
        minutes = min(ends) / speed / 60 if ends else None
        band = next((b for b in MINUTES if minutes is not None and minutes <= b), None)
        feats.append({"type": "Feature", "id": int(r["id"]), "geometry": json.loads(r["geometry"]),
                      "properties": {"minutes": _round(minutes, 2), "band": band}})
    return {"type": "FeatureCollection", "features": feats, "meta": {"kind": kind, "speed": speed}}


def facility_counts(conn: Connection) -> dict[str, int]:
    """kind → number of facilities (every kind listed)."""
    return {k: int(n) for k, n in conn.execute(sql("access/facility_counts"))}
