"""Analytics: one route per function of :mod:`gis.analytics` (the SQL lives there).

Inputs are validated here (types, ranges, window lengths); ``ValueError`` from the library
becomes 400. Each route declares its answer's shape (:mod:`api.analytics_models`) for the OpenAPI
document while the body is still encoded by orjson directly. Person-level population
(``privileged=True``) only for users created with ``--privileged``, and each such read is
written to ``audit_log`` before the answer is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from api import analytics_models as m
from api.auth import User, write_audit
from api.deps import CurrentUser, DbConn, State, client_addr, require
from api.errors import BadRequest
from api.limits import AnalyticsSlots, client_key
from gis import analytics, cost, routing
from gis.dberrors import db_errors
from gis.policy import Permission


async def analytics_slot(request: Request, user: CurrentUser) -> AsyncIterator[None]:
    """Resolved before the database connection: a request waits for a slot (per process and per
    token, :class:`api.limits.AnalyticsSlots`) holding no connection and no thread."""
    if user is None:  # the route answers 401
        yield
        return
    state = request.app.state.onemap
    slots = state.caches.get("analytics_slots")
    if slots is None:
        api = state.settings.api
        slots = state.caches.setdefault("analytics_slots", AnalyticsSlots(
            api.analytics_concurrency, api.analytics_per_token, api.analytics_queue_s, api.db_retry_after_s))
    key = client_key(dict(request.headers), request.url.query, client_addr(request))
    async with slots.slot(key):
        yield


router = APIRouter(prefix="/analytics", tags=["analytics"], dependencies=[Depends(analytics_slot)])

Reader = Annotated[User, Depends(require(Permission.READ))]
Patrols = Annotated[User, Depends(require(Permission.READ_PATROLS))]
Positions = Annotated[User, Depends(require(Permission.READ_POSITIONS))]
Coverage = Annotated[User, Depends(require(Permission.READ_COVERAGE))]
PopulationReader = Annotated[User, Depends(require(Permission.READ_POPULATION))]

MAX_WINDOW = timedelta(days=3660)
MAX_TRACK_WINDOW = timedelta(days=7)

Lon = Annotated[float, Query(ge=-180, le=180, description="longitude (CRS84)")]
Lat = Annotated[float, Query(ge=-90, le=90, description="latitude (CRS84)")]
Start = Annotated[datetime | None, Query(description="window start (RFC 3339); default end - 30 days")]
End = Annotated[datetime | None, Query(description="window end (RFC 3339); default now")]
CategoryQ = Annotated[str | None, Query(max_length=500, description="category, or several comma-separated")]
Day = Annotated[date | None, Query(description="local (UTC+8) day YYYY-MM-DD; default today")]


def _default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, set | frozenset | tuple):
        return list(v)
    return str(v)


def _json(body: Any, media_type: str = "application/json") -> Response:
    return Response(orjson.dumps(body, default=_default, option=orjson.OPT_NON_STR_KEYS),
                    media_type=media_type)


def _aware(t: datetime | None) -> datetime | None:
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t


def _window(start: datetime | None, end: datetime | None, default_days: int = 30,
            max_len: timedelta = MAX_WINDOW) -> tuple[datetime, datetime]:
    end = _aware(end) or datetime.now(UTC)
    try:
        start = _aware(start) or end - timedelta(days=default_days)
    except OverflowError as exc:
        raise BadRequest("time window out of range") from exc
    if start >= end:
        raise BadRequest("start must be before end")
    if end - start > max_len:
        raise BadRequest(f"time window longer than {max_len.days} days")
    return start, end


def _categories(category: str | None) -> list[str] | None:
    if not category:
        return None
    return [c.strip() for c in category.split(",") if c.strip()]


def _today() -> date:
    return datetime.now(analytics.LOCAL_TZ).date()


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a :mod:`gis.analytics` function; bad values (ValueError, or the database refusing a
    parameter, see :func:`gis.dberrors.db_errors`) become 400."""
    try:
        with db_errors(postgis_input=True):
            return fn(*args, **kwargs)
    except (ValueError, OverflowError) as exc:
        raise BadRequest(str(exc)) from exc


def _budget(state: State, conn: DbConn, kind: str, cell: str, size: float, t0: datetime, t1: datetime,
            category: str | None) -> None:
    """400 naming the parameter to change when the estimated cost is over ``analytics_max_cost``."""
    estimate = cost.estimate(conn, kind, cell, size, t0, t1, _categories(category))
    cost.check_budget(estimate, state.settings.api.analytics_max_cost, cell)


@router.get("/events/density", response_model=m.DensityCollection,
            summary="Event counts per grid cell, square or hexagon (GeoJSON)")
def event_density(
    state: State, conn: DbConn, _: Reader, start: Start = None, end: End = None, category: CategoryQ = None,
    cell: Literal["grid", "hex", "square"] = "grid",
    size: Annotated[float, Query(ge=20, le=5000, description="cell size (m)")] = 250.0,
) -> Response:
    t0, t1 = _window(start, end)
    _budget(state, conn, "density", cell, size, t0, t1, category)
    fc = _call(analytics.event_density, conn, t0, t1, _categories(category), cell, size)
    return _json(fc, "application/geo+json")


@router.get("/events/hotspots", response_model=m.HotspotCollection,
            summary="Getis-Ord Gi* hot spots of events (GeoJSON: gi_z, p)")
def event_hotspots(
    state: State, conn: DbConn, _: Reader, start: Start = None, end: End = None, category: CategoryQ = None,
    cell: Literal["square", "hex"] = "square",
    size: Annotated[float, Query(ge=20, le=5000, description="cell size (m)")] = 250.0,
) -> Response:
    t0, t1 = _window(start, end)
    _budget(state, conn, "hotspots", cell, size, t0, t1, category)
    fc = _call(analytics.event_hotspots, conn, t0, t1, _categories(category), cell, size)
    return _json(fc, "application/geo+json")


@router.get("/events/sla", response_model=list[m.SlaRow], summary="Open/overdue counts and mean time per stage")
def event_sla(
    conn: DbConn, _: Reader, group: Literal["category", "grid", "worker"] = "category",
    start: Annotated[datetime | None, Query()] = None, end: Annotated[datetime | None, Query()] = None,
    category: CategoryQ = None,
) -> Response:
    if start and end and _aware(start) >= _aware(end):  # type: ignore[operator]
        raise BadRequest("start must be before end")
    return _json(_call(analytics.sla, conn, group, _aware(start), _aware(end), _categories(category)))


@router.get("/patrollers/nearest", response_model=list[m.NearestPatroller],
            summary="Nearest patrollers to a point by their latest fix, along the roads or straight")
def nearest_patrollers(
    conn: DbConn, _: Positions, lon: Lon, lat: Lat,
    n: Annotated[int, Query(ge=1, le=1000)] = 5,
    max_age_s: Annotated[float | None, Query(gt=0, le=30 * 86400, description="ignore older fixes")] = None,
    kind: Literal["grid_worker", "vehicle"] | None = None,
    by: Annotated[Literal["network", "straight"], Query(
        description="network: the n nearest along the roads (of the 4n nearest in a straight line, "
                    "at least 20); straight: the n nearest in a straight line")] = "network",
) -> Response:
    pool = n if by == "straight" else min(max(4 * n, 20), 1000)
    rows = _call(analytics.nearest_patrollers, conn, lon, lat, pool, max_age_s, kind)
    return _json(_call(routing.add_network, conn, lon, lat, rows, by, n))


@router.get("/cameras/visible", response_model=list[m.VisibleCamera], summary="Cameras that can see a point")
def cameras_visible(
    conn: DbConn, _: Reader, lon: Lon, lat: Lat,
    h: Annotated[float, Query(ge=0, le=500, description="height above ground (m)")] = 1.5,
    online: Annotated[bool, Query(description="only cameras online")] = False,
) -> Response:
    return _json(_call(analytics.cameras_visible, conn, lon, lat, h, online))


@router.get("/patrol/mileage", response_model=list[m.Mileage], summary="Kilometres per worker on a day")
def patrol_mileage(
    conn: DbConn, _: Patrols, day: Day = None,
    worker_id: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return _json(_call(analytics.patrol_mileage, conn, day or _today(), worker_id))


@router.get("/patrol/track", response_model=m.TrackCollection | m.CzmlDocument,
            summary="A worker's cleaned track (GeoJSON, or CZML for Cesium playback)")
def patrol_track(
    conn: DbConn, _: Patrols, worker_id: Annotated[str, Query(min_length=1, max_length=40)],
    start: Start = None, end: End = None, format: Literal["geojson", "czml"] = "geojson",  # noqa: A002
) -> Response:
    t0, t1 = _window(start, end, default_days=1, max_len=MAX_TRACK_WINDOW)
    doc = _call(analytics.patrol_track, conn, worker_id, t0, t1, format)
    return _json(doc, "application/geo+json" if format == "geojson" else "application/json")


@router.get("/patrol/coverage", response_model=list[m.RoadCoverage],
            summary="Share of road length per grid cell covered by patrols")
def patrol_coverage(
    conn: DbConn, _: Coverage, day: Day = None,
    buffer: Annotated[float, Query(ge=1, le=200, description="metres either side of a track")] = 20.0,
) -> Response:
    return _json(_call(analytics.road_coverage, conn, day or _today(), buffer))


@router.get("/patrol/checkins", response_model=list[m.Checkins], summary="Checkpoint visits per worker shift")
def patrol_checkins(
    conn: DbConn, _: Patrols, day: Day = None,
    worker_id: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return _json(_call(analytics.checkin_compliance, conn, day or _today(), worker_id))


@router.get("/alarms", response_model=list[m.Alarm], summary="Geofence alarms raised since a time (newest first)")
def alarms(
    conn: DbConn, _: Positions,
    since: Annotated[datetime | None, Query(description="default: 24 h ago")] = None,
    until: Annotated[datetime | None, Query()] = None,
    kind: Literal["left_patrol_area", "no_parking_dwell"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    since = _aware(since) or datetime.now(UTC) - timedelta(days=1)
    if until is not None and _aware(until) <= since:  # type: ignore[operator]
        raise BadRequest("until must be after since")
    return _json(_call(analytics.alarms, conn, since, _aware(until), kind, limit))


@router.get("/population", response_model=list[m.Population],
            summary="Residents per building/grid/community (suppressed below 5)")
def population(
    request: Request, state: State, conn: DbConn,
    user: PopulationReader,
    level: Literal["building", "grid", "community"] = "grid",
    id: Annotated[str | None, Query(max_length=40)] = None,  # noqa: A002
) -> Response:
    if user.privileged:
        rows = _call(analytics.population, conn, level, id, True)
        with state.engine.begin() as audit:
            write_audit(audit, user, "population.read_unsuppressed", f"{level}:{id or '*'}",
                        {"path": request.url.path, "query": str(request.url.query), "rows": len(rows)},
                        client_addr(request))
    else:
        rows = _call(analytics.population, conn, level, id, False)
    return _json(rows)


@router.get("/kpis", response_model=m.Kpis, summary="Big-screen figures")
def kpis(conn: DbConn, _: Reader) -> Response:
    return _json(_call(analytics.kpis, conn))
