"""Analytics on the overlay layers: one function per question, used by the API and the notebooks.

The SQL lives in ``gis/sql/<name>.sql`` (bound parameters only) and in the database functions of
migration ``0001_overlays`` (``clean_fixes``, ``worker_shifts``, ``checkpoint_visits``,
``geofence_episodes``, ...). Every function takes a SQLAlchemy ``Connection`` (so the caller's
``SET ROLE`` applies) or an ``Engine``; functions that write (alarms) commit when given an Engine
and leave the transaction to the caller when given a Connection.

Times are timezone-aware ``datetime``; a "day" is a local (Asia/Shanghai, UTC+8) calendar day.
Geometries are returned as GeoJSON in EPSG:4490 lon/lat (equal to CRS84 to a few cm).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, text

from gis.czml import track_czml
from gis.dbroles import privileged_role
from gis.sqlfiles import sql

log = logging.getLogger(__name__)

LOCAL_TZ = ZoneInfo("Asia/Shanghai")

Bind = Connection | Engine
CellKind = Literal["grid", "hex", "square"]
GroupBy = Literal["category", "grid", "worker"]
Level = Literal["building", "grid", "community"]
Categories = str | Sequence[str] | None


@dataclass(frozen=True)
class TrackParams:
    """Cleaning of GPS tracks (see ``clean_fixes`` in docs/postgis.md)."""

    max_speed_mps: float = 15.0  # implied speed above this from the last kept fix = spike
    jitter_k: float = 1.0  # a step shorter than jitter_k * accuracy (m) is jitter
    min_step_m: float = 3.0  # ... or shorter than this
    max_gap_s: float = 600.0  # a longer silence starts a new segment

    def params(self) -> dict[str, float]:
        return {
            "max_speed": self.max_speed_mps,
            "jitter_k": self.jitter_k,
            "min_step_m": self.min_step_m,
            "max_gap_s": self.max_gap_s,
        }


DEFAULT_TRACK = TrackParams()


@contextmanager
def _connection(bind: Bind, write: bool = False) -> Iterator[Connection]:
    if isinstance(bind, Engine):
        with bind.begin() if write else bind.connect() as conn:
            yield conn
    else:
        yield bind


def _plain(v: Any) -> Any:
    return float(v) if isinstance(v, Decimal) else v


def _rows(bind: Bind, name: str, **params: Any) -> list[dict[str, Any]]:
    with _connection(bind) as conn:
        result = conn.execute(sql(name), params)
        return [{k: _plain(v) for k, v in row._mapping.items()} for row in result]


def _categories(category: Categories) -> list[str] | None:
    if category is None:
        return None
    return [category] if isinstance(category, str) else list(category)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[00:00, 24:00) of a local (Asia/Shanghai) day, as aware datetimes."""
    start = datetime.combine(day, time(0), tzinfo=LOCAL_TZ)
    return start, start + timedelta(days=1)


def _aware(t: datetime | None) -> datetime:
    if t is None:
        return datetime.now(UTC)
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t.isoformat()}: give a timezone")
    return t


def _feature_collection(rows: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    features = []
    for r in rows:
        props = {k: v for k, v in r.items() if k not in ("geometry", "cell_id")}
        features.append(
            {"type": "Feature", "id": r["cell_id"], "geometry": r["geometry"], "properties": props}
        )
    return {"type": "FeatureCollection", "features": features, "meta": meta}


# --- events -----------------------------------------------------------------------------------------
def event_density(
    bind: Bind,
    start: datetime,
    end: datetime,
    category: Categories = None,
    cell: CellKind = "grid",
    size_m: float = 250.0,
) -> dict[str, Any]:
    """Events reported in [start, end) per grid cell (all cells) or per metric square/hexagon
    (non-empty only; ``size_m`` = square side / hexagon edge in EPSG:4548).

    Returns a GeoJSON FeatureCollection; properties ``count`` (+ ``name`` or ``i``/``j``).
    """
    if cell not in ("grid", "hex", "square"):
        raise ValueError(f"cell must be grid, hex or square, not {cell!r}")
    if cell != "grid" and not size_m > 0:
        raise ValueError("size_m must be > 0")
    params: dict[str, Any] = {"start": _aware(start), "end": _aware(end), "categories": _categories(category)}
    if cell != "grid":
        params["size"] = float(size_m)
    rows = _rows(bind, f"density_{cell}", **params)
    return _feature_collection(
        rows,
        cell=cell,
        size_m=None if cell == "grid" else size_m,
        start=params["start"].isoformat(),
        end=params["end"].isoformat(),
        total=sum(r["count"] for r in rows),
    )


def event_hotspots(
    bind: Bind,
    start: datetime,
    end: datetime,
    category: Categories = None,
    cell: Literal["square", "hex"] = "square",
    size_m: float = 250.0,
    distance_m: float | None = None,
) -> dict[str, Any]:
    """Getis-Ord Gi* of event counts over square/hex cells covering the district.

    Neighbours: cell centroids within ``distance_m`` (default 1.5 x size for squares = the 8
    touching cells, 1.8 x edge for hexagons = the 6 touching cells), the cell itself included.
    Returns a GeoJSON FeatureCollection with properties ``count``, ``gi_z`` (None when undefined,
    e.g. no events), ``p`` (two-sided normal p-value) and ``neighbours``.
    """
    if cell not in ("square", "hex"):
        raise ValueError(f"cell must be square or hex, not {cell!r}")
    if distance_m is None:
        distance_m = size_m * (1.5 if cell == "square" else 1.8)
    rows = _rows(
        bind,
        "hotspots",
        start=_aware(start),
        end=_aware(end),
        categories=_categories(category),
        size=float(size_m),
        shape=cell,
        distance=float(distance_m),
    )
    for r in rows:
        z = r["gi_z"]
        r["p"] = None if z is None else math.erfc(abs(z) / math.sqrt(2.0))
    return _feature_collection(
        rows,
        cell=cell,
        size_m=size_m,
        distance_m=distance_m,
        start=_aware(start).isoformat(),
        end=_aware(end).isoformat(),
    )


def sla(
    bind: Bind,
    group_by: GroupBy = "category",
    start: datetime | None = None,
    end: datetime | None = None,
    category: Categories = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Per key (category, grid cell or worker): ``total``, ``open``, ``overdue`` (open past
    ``deadline_at`` at ``now``), ``closed``, ``closed_late``, ``mean_close_s`` and
    ``mean_stage_s`` {status: mean seconds spent in it before the next step}."""
    if group_by not in ("category", "grid", "worker"):
        raise ValueError(f"group_by must be category, grid or worker, not {group_by!r}")
    return _rows(
        bind,
        "sla",
        group_by=group_by,
        start=start,
        end=end,
        categories=_categories(category),
        now=_aware(now),
    )


# --- patrols --------------------------------------------------------------------------------------
def nearest_patrollers(
    bind: Bind,
    lon: float,
    lat: float,
    n: int = 5,
    max_fix_age_s: float | None = None,
    kind: str | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The ``n`` active workers nearest to (lon, lat) (EPSG:4490) by their latest fix:
    ``[{worker_id, name, kind, grid_id, distance_m, fix_age_s, lon, lat, t, device_id}]``.
    ``max_fix_age_s`` drops workers whose latest fix is older (i.e. not on duty)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    return _rows(
        bind,
        "nearest_patrollers",
        lon=float(lon),
        lat=float(lat),
        n=int(n),
        kind=kind,
        max_age_s=None if max_fix_age_s is None else float(max_fix_age_s),
        now=_aware(now),
    )


def cameras_visible(
    bind: Bind, lon: float, lat: float, h: float = 1.5, only_online: bool = False
) -> list[dict[str, Any]]:
    """Cameras that see (lon, lat) at ``h`` m above ground: in range, inside the horizontal field
    of view and with a line of sight not blocked by building prisms (method in docs/postgis.md).
    ``[{camera_id, name, kind, status, stream_url, distance_m, slant_m, bearing_deg}]`` nearest first."""
    return _rows(bind, "cameras_visible", lon=float(lon), lat=float(lat), h=float(h), only_online=only_online)


def patrol_mileage(
    bind: Bind, day: date, worker_id: str | None = None, params: TrackParams = DEFAULT_TRACK
) -> list[dict[str, Any]]:
    """Distance per worker on a local day from cleaned fixes:
    ``[{worker_id, name, kind, day, km, fixes, spikes, jitter, gaps, first_fix, last_fix}]``."""
    t0, t1 = day_bounds(day)
    rows = _rows(bind, "mileage", t0=t0, t1=t1, worker_id=worker_id, **params.params())
    for r in rows:
        r["day"] = day.isoformat()
    return rows


def track_points(
    bind: Bind, worker_id: str, start: datetime, end: datetime, params: TrackParams = DEFAULT_TRACK
) -> list[dict[str, Any]]:
    """A worker's fixes in [start, end) with the cleaning verdict:
    ``[{t, status: start|gap|reanchor|kept|jitter|spike, step_m, seg, accuracy, device_id, lon, lat}]``."""
    return _rows(
        bind, "track_points", t0=_aware(start), t1=_aware(end), worker_id=worker_id, **params.params()
    )


VERTEX_STATUSES = ("start", "gap", "reanchor", "kept")


def patrol_track(
    bind: Bind,
    worker_id: str,
    start: datetime,
    end: datetime,
    fmt: Literal["geojson", "czml"] = "geojson",
    params: TrackParams = DEFAULT_TRACK,
) -> dict[str, Any] | list[dict[str, Any]]:
    """A worker's cleaned track between two times.

    ``geojson``: FeatureCollection, one LineString per continuous segment (properties
    ``worker_id, seg, start, end, length_m, points``) — spikes and jitter are not vertices.
    ``czml``: a CZML document (list of packets) for Cesium playback.
    """
    pts = [p for p in track_points(bind, worker_id, start, end, params) if p["status"] in VERTEX_STATUSES]
    if fmt == "czml":
        return track_czml(worker_id, worker_id, [(p["t"], p["lon"], p["lat"], p["h_ground"]) for p in pts])
    if fmt != "geojson":
        raise ValueError(f"fmt must be geojson or czml, not {fmt!r}")
    segs: dict[int, list[dict[str, Any]]] = {}
    for p in pts:
        segs.setdefault(p["seg"], []).append(p)
    features = []
    for seg, sp in sorted(segs.items()):
        coords = [[round(p["lon"], 7), round(p["lat"], 7)] for p in sp]
        geometry = (
            {"type": "LineString", "coordinates": coords}
            if len(coords) > 1
            else {"type": "Point", "coordinates": coords[0]}
        )
        features.append(
            {
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "worker_id": worker_id,
                    "seg": seg,
                    "start": sp[0]["t"].isoformat(),
                    "end": sp[-1]["t"].isoformat(),
                    "length_m": sum(p["step_m"] for p in sp),
                    "points": len(sp),
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "features": features,
        "meta": {"worker_id": worker_id, "start": _aware(start).isoformat(), "end": _aware(end).isoformat()},
    }


def checkin_compliance(
    bind: Bind, day: date, worker_id: str | None = None, shift_gap_s: float = 1800.0
) -> list[dict[str, Any]]:
    """Per worker shift (fixes more than ``shift_gap_s`` apart split shifts) on a local day: the
    checkpoints of the worker's grid cell that had a fix within their radius:
    ``[{worker_id, shift_start, shift_end, required, visited, share, missed: [...], visited_ids}]``."""
    t0, t1 = day_bounds(day)
    rows = _rows(bind, "checkins", t0=t0, t1=t1, worker_id=worker_id, shift_gap_s=float(shift_gap_s))
    for r in rows:
        r["share"] = r["visited"] / r["required"] if r["required"] else None
        r["missed"], r["visited_ids"] = list(r["missed"]), list(r["visited_ids"])
    return rows


def road_coverage(
    bind: Bind, day: date, buffer_m: float = 20.0, params: TrackParams = DEFAULT_TRACK
) -> list[dict[str, Any]]:
    """Per grid cell: road length (roads clipped to the cell) and the part within ``buffer_m`` of
    any cleaned patrol track of the day: ``[{grid_id, name, road_m, covered_m, share}]``."""
    t0, t1 = day_bounds(day)
    rows = _rows(bind, "coverage", t0=t0, t1=t1, buffer_m=float(buffer_m), **params.params())
    for r in rows:
        r["share"] = r["covered_m"] / r["road_m"] if r["road_m"] > 0 else None
        r["day"] = day.isoformat()
    return rows


# --- geofences ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeofenceParams:
    min_outside_s: float = 60.0  # outside the patrol area at least this long
    tolerance_m: float = 10.0  # closer than this to the area counts as inside
    max_gap_s: float = 300.0  # a longer silence ends an episode
    default_dwell_min: float = 15.0  # for no-parking zones without max_dwell_min
    dwell_kinds: tuple[str, ...] = ("vehicle",)  # worker kinds checked for no-parking dwell

    def args(self) -> tuple[Any, ...]:
        return (
            self.min_outside_s,
            self.tolerance_m,
            self.max_gap_s,
            self.default_dwell_min,
            list(self.dwell_kinds),
        )


DEFAULT_GEOFENCE = GeofenceParams()


def geofence_alarms_batch(
    bind: Bind, start: datetime, end: datetime, params: GeofenceParams = DEFAULT_GEOFENCE
) -> int:
    """Detect leaving-the-patrol-area and no-parking-dwell episodes among the fixes in
    [start, end) and write new ``alarms`` (episodes already alarmed are extended, not repeated).
    Returns the number of new alarms (each NOTIFYs ``{"type": "alarm"}``)."""
    stmt = text("SELECT raise_geofence_alarms(:s, :e, :a, :b, :c, :d, CAST(:k AS text[]))")
    a, b, c, d, k = params.args()
    with _connection(bind, write=True) as conn:
        return int(
            conn.execute(
                stmt, {"s": _aware(start), "e": _aware(end), "a": a, "b": b, "c": c, "d": d, "k": k}
            ).scalar_one()
        )


def process_new_fixes(bind: Bind, lookback_s: float = 7200.0) -> int:
    """Incremental alarms: fixes newer than the ``geofence`` watermark (re-reading ``lookback_s``
    before it), then advance the watermark. Call after each batch of new fixes or periodically."""
    stmt = text("SELECT process_geofence_alarms(make_interval(secs => :lb))")
    with _connection(bind, write=True) as conn:
        return int(conn.execute(stmt, {"lb": float(lookback_s)}).scalar_one())


def alarms(
    bind: Bind, since: datetime, until: datetime | None = None, kind: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Alarms raised in [since, until), newest first: ``[{id, kind, worker_id, worker_name,
    device_id, geofence_id, geofence_name, t_start, t_end, raised_at, created_at, acknowledged_at,
    details, lon, lat}]``."""
    return _rows(bind, "alarms", since=_aware(since), until=until, kind=kind, limit=int(limit))


# --- population / KPIs --------------------------------------------------------------------------------
def population(
    bind: Bind,
    level: Level = "grid",
    id: str | None = None,
    privileged: bool = False,  # noqa: A002
) -> list[dict[str, Any]]:
    """Residents per building / grid cell / community by category: ``[{level, id, name, total,
    registered, floating, age_60_plus, age_80_plus, children_under_14, special_care, suppressed}]``.

    Unprivileged: counts below 5 are None and named in ``suppressed`` (views
    ``population_by_*``). ``privileged=True`` reads ``restricted.population_by_*_full`` as
    ``onemap_privileged`` (``SET LOCAL ROLE`` in a savepoint around the read, see
    :func:`gis.dbroles.privileged_role`), so PostgreSQL refuses it to a role not granted it.
    """
    if level not in ("building", "grid", "community"):
        raise ValueError(f"level must be building, grid or community, not {level!r}")
    if privileged:
        with _connection(bind) as conn, privileged_role(conn):
            rows = _rows(conn, "population_full", level=level, id=id)
    else:
        rows = _rows(bind, "population", level=level, id=id)
    for r in rows:
        r["suppressed"] = list(r["suppressed"])
    return rows


def kpis(bind: Bind, now: datetime | None = None, on_duty_minutes: float = 10.0) -> dict[str, Any]:
    """Big-screen figures at ``now``: ``{events_today: {status: n}, overdue, open,
    patrollers_on_duty (a fix in the last ``on_duty_minutes``), patrollers_total, cameras_online,
    cameras_total, alarms_today}``; "today" is the local day containing ``now``."""
    now = _aware(now)
    day_start, day_end = day_bounds(now.astimezone(LOCAL_TZ).date())
    rows = _rows(bind, "kpis", now=now, day_start=day_start, day_end=day_end, on_duty_s=on_duty_minutes * 60)
    out = rows[0]
    out["now"] = now.isoformat()
    return out
