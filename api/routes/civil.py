"""Planners and the civil-affairs office (issue 16): community targets, camera coverage gaps and
care visits. The work is in :mod:`gis.targets`, :mod:`gis.camera_coverage` and :mod:`gis.care`.

Care data is person-level: ``/care/overdue`` and ``/care/route`` return households only to
privileged users (``onemap users add --privileged``), each such read audited; other holders of
``care`` get the answer without households (``withheld``). Devices record visits as the worker
their bound device belongs to. Planners see suppressed counts only (``/analytics/care``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from api import civil_models as cm
from api.auth import User, write_audit
from api.deps import DbConn, State, client_addr, require
from api.errors import BadRequest, Forbidden
from api.routes.analytics import analytics_slot
from gis import camera_coverage, care, targets
from gis.dberrors import db_errors
from gis.policy import Permission

router = APIRouter(tags=["civil affairs"])

Reader = Annotated[User, Depends(require(Permission.READ))]
PopulationReader = Annotated[User, Depends(require(Permission.READ_POPULATION))]
Carer = Annotated[User, Depends(require(Permission.CARE))]
Visitor = Annotated[User, Depends(require(Permission.RECORD_VISITS))]
WorkerQ = Annotated[str, Query(min_length=1, max_length=40, description="worker id")]


def _default(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if hasattr(v, "__float__"):
        return float(v)
    raise TypeError(type(v).__name__)


def _json(body: Any, status_code: int = 200, media_type: str = "application/json") -> Response:
    return Response(orjson.dumps(body, default=_default), status_code=status_code, media_type=media_type)


def _aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        with db_errors(postgis_input=True):
            return fn(*args, **kwargs)
    except (ValueError, OverflowError) as exc:
        raise BadRequest(str(exc)) from exc


# --- targets ----------------------------------------------------------------------------------------
@router.get("/analytics/targets", dependencies=[Depends(analytics_slot)], response_model=cm.Targets,
            summary="Community targets: series, change against the baseline, on/off track")
def analytics_targets(
    state: State, conn: DbConn, _: Reader,
    as_of: Annotated[datetime | None, Query(description="evaluate at this time (default now)")] = None,
) -> Response:
    path = state.settings.paths.targets_file
    doc = _call(targets.evaluate, conn, targets.load_targets(path), _aware(as_of))
    return _json({"file": str(path)} | doc)


# --- camera coverage --------------------------------------------------------------------------------
@router.get("/analytics/camera-coverage", dependencies=[Depends(analytics_slot)], response_model=cm.CameraCoverage,
            summary="Main-road length seen by cameras per community, unseen hot spots, candidate sites")
def analytics_camera_coverage(
    conn: DbConn, _: Reader,
    start: Annotated[datetime | None, Query(description="hot-spot window start (default end - 365 days)")] = None,
    end: Annotated[datetime | None, Query(description="hot-spot window end (default now)")] = None,
    online: Annotated[bool, Query(description="only cameras online")] = False,
    cell: Annotated[float, Query(ge=50, le=2000, description="hot-spot cell size (m)")] = 250.0,
    seen_below: Annotated[float, Query(ge=0, le=1, description="a hot spot is unseen below this seen share")] = 0.5,
    sites: Annotated[int, Query(ge=0, le=50, description="candidate sites to rank")] = 5,
    spacing: Annotated[float, Query(ge=10, le=500, description="candidate spacing along main roads (m)")] = 50.0,
    range_m: Annotated[float, Query(gt=5, le=500, description="candidate camera range (m)")] = 60.0,
    mount: Annotated[float, Query(gt=0, le=100, description="candidate camera height (m)")] = 6.0,
    hotspot_weight: Annotated[float, Query(ge=0, le=1e6, description="road metres per gi_z")] = 100.0,
) -> Response:
    t1 = _aware(end) or datetime.now(UTC)
    t0 = _aware(start) or t1 - timedelta(days=365)
    if t0 >= t1:
        raise BadRequest("start must be before end")
    if t1 - t0 > timedelta(days=3660):
        raise BadRequest("time window longer than 3660 days")
    model = camera_coverage.CameraModel(mount_m=mount, range_m=range_m)
    return _json(_call(camera_coverage.coverage, conn, t0, t1, only_online=online, cell_m=cell,
                       seen_below=seen_below, sites=sites, spacing_m=spacing, model=model,
                       hotspot_weight_m=hotspot_weight))


@router.get("/analytics/camera-viewsheds", dependencies=[Depends(analytics_slot)], response_model=cm.Viewsheds,
            summary="The ground each camera sees (GeoJSON, the viewer's camera-gap layer)")
def analytics_camera_viewsheds(
    conn: DbConn, _: Reader, online: Annotated[bool, Query(description="only cameras online")] = False,
) -> Response:
    return _json(_call(camera_coverage.viewsheds, conn, online), media_type="application/geo+json")


# --- care -------------------------------------------------------------------------------------------
@router.get("/analytics/care", response_model=list[cm.CareCount],
            summary="Care households and overdue visits per community (suppressed)")
def analytics_care(
    conn: DbConn, _: PopulationReader, at: Annotated[datetime | None, Query(description="default now")] = None,
) -> Response:
    return _json(_call(care.by_community, conn, _aware(at) or datetime.now(UTC)))


class VisitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    household_id: str = Field(min_length=1, max_length=40)
    device_id: str | None = Field(None, max_length=40, description="device accounts: one bound to them")
    worker_id: str | None = Field(None, max_length=40, description="admin only; devices: from the device")
    visited_at: datetime | None = Field(None, description="default now")
    outcome: Literal["visited", "not_home", "refused"] = "visited"
    note: str | None = Field(None, max_length=2000)


@router.post("/care/visits", status_code=201, summary="Record a care visit (device: as its worker)")
def care_visit(body: VisitIn, request: Request, state: State, user: Visitor) -> Response:
    with state.engine.begin() as conn:
        worker = body.worker_id
        if user.role == "device":
            if body.device_id is None or body.device_id not in user.devices:
                raise Forbidden("a device account records visits with a device_id bound to it",
                                hint=f"bound: {', '.join(sorted(user.devices)) or 'none'}")
            bound = care.worker_of_device(conn, body.device_id)
            if bound is None:
                raise Forbidden(f"device {body.device_id!r} belongs to no active worker")
            if worker is not None and worker != bound:
                raise Forbidden(f"device {body.device_id!r} belongs to worker {bound!r}, not {worker!r}")
            worker = bound
        at = _aware(body.visited_at) or datetime.now(UTC)
        vid = care.record_visit(conn, body.household_id, worker, body.device_id, at, body.outcome, body.note)
        write_audit(conn, user, "care.visit", body.household_id,
                    {"visit_id": vid, "worker_id": worker, "device_id": body.device_id, "outcome": body.outcome},
                    client_addr(request), ids=[body.household_id])
    return _json({"id": vid, "household_id": body.household_id, "worker_id": worker, "visited_at": at,
                  "outcome": body.outcome}, 201)


def _audit_read(state: State, request: Request, user: User, action: str, worker: str | None,
                ids: list[str], details: dict[str, Any]) -> None:
    with state.engine.begin() as audit:
        write_audit(audit, user, action, f"worker:{worker or '*'}",
                    {"path": request.url.path, "query": str(request.url.query)} | details,
                    client_addr(request), ids=ids)


@router.get("/care/overdue", summary="Households overdue for a visit, per worker (privileged: audited)")
def care_overdue(
    request: Request, state: State, conn: DbConn, user: Carer,
    worker: Annotated[str | None, Query(min_length=1, max_length=40, description="worker id (default all)")] = None,
    at: Annotated[datetime | None, Query(description="default now")] = None,
) -> Response:
    t = _aware(at) or datetime.now(UTC)
    if not user.privileged:
        return _json({"worker_id": worker, "at": t, "withheld": True, "households": None,
                      "reason": "person-level care data: privileged users only"})
    rows = _call(care.overdue, conn, worker, t)
    _audit_read(state, request, user, "care.read_overdue", worker, [r["household_id"] for r in rows],
                {"rows": len(rows)})
    return _json({"worker_id": worker, "at": t, "withheld": False, "households": rows})


@router.get("/care/route", summary="A worker's visiting route for a day over the road network (privileged: audited)")
def care_route(
    request: Request, state: State, conn: DbConn, user: Carer, worker: WorkerQ,
    date_: Annotated[date | None, Query(alias="date", description="local day YYYY-MM-DD (default today)")] = None,
) -> Response:
    day = date_ or datetime.now(care.LOCAL_TZ).date()
    if not user.privileged:
        return _json({"worker_id": worker, "date": day, "withheld": True, "stops": None,
                      "reason": "person-level care data: privileged users only"})
    out = _call(care.route, conn, worker, day)
    _audit_read(state, request, user, "care.read_route", worker,
                [s["household_id"] for s in out["stops"]] + out["unreachable"], {"stops": len(out["stops"])})
    return _json(out | {"withheld": False})
