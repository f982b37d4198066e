"""Event writes: report (POST), status transitions (PATCH), history.

Every acknowledged write is committed before the response is sent. Status changes go through
the database function ``event_set_status`` (records actor/note in the append-only history and
NOTIFYs the live stream); the allowed transitions come from :mod:`gis.lifecycle`.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Connection
from starlette.responses import Response

from api.auth import READ_ROLES, User
from api.collections import COLLECTIONS
from api.deps import DbConn, State, require_roles
from api.errors import BadRequest, Conflict, NotFound
from api.featuresql import ItemQuery, Source, query_items
from gis import lifecycle

router = APIRouter(tags=["events"])

CATEGORIES = ("city_appearance", "street_order", "sanitation", "municipal_facilities", "greening",
              "illegal_construction", "safety_hazard", "dispute")
WRITE_ROLES = frozenset({"admin", "operator", "device"})
TRANSITION_ROLES = frozenset({"admin", "operator"})
GEOJSON = "application/geo+json"


class PointGeometry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["Point"]
    coordinates: tuple[float, float] | tuple[float, float, float]


class EventIn(BaseModel):
    """A new event. Position as ``lon``/``lat`` (CRS84) or a GeoJSON Point ``geometry``."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$", description="default: generated")
    category: Literal[CATEGORIES]  # type: ignore[valid-type]
    priority: Literal["A", "B", "C", "D"] = "C"
    source: Literal["grid_worker", "resident", "camera"] = "grid_worker"
    description: str | None = Field(None, max_length=4000)
    lon: float | None = Field(None, ge=-180, le=180)
    lat: float | None = Field(None, ge=-90, le=90)
    geometry: PointGeometry | None = None
    reported_at: datetime | None = Field(None, description="default: now")
    worker_id: str | None = Field(None, max_length=40)

    @model_validator(mode="after")
    def _position(self) -> EventIn:
        if self.geometry is not None:
            lon, lat = self.geometry.coordinates[:2]
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise ValueError("geometry.coordinates outside lon/lat range")
            self.lon, self.lat = lon, lat
        if self.lon is None or self.lat is None:
            raise ValueError("give lon and lat (or a GeoJSON Point geometry)")
        return self

    @field_validator("reported_at")
    @classmethod
    def _not_future(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return v
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        if v > datetime.now(UTC) + timedelta(minutes=5):
            raise ValueError("reported_at is in the future")
        if v.year < 2000:
            raise ValueError("reported_at before 2000")
        return v


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal[lifecycle.STATUSES]  # type: ignore[valid-type]
    actor: str | None = Field(None, max_length=100, description="default: the API user's name")
    note: str | None = Field(None, max_length=4000)
    worker_id: str | None = Field(None, max_length=40, description="assign a worker (on dispatch)")


def _event_feature(conn: Connection, event_id: str, user: User) -> bytes:
    src = Source(COLLECTIONS["events"], False, user.role)
    rows, _ = query_items(conn, src, ItemQuery(limit=1, fid=event_id), 0, count=False)
    if not rows:
        raise NotFound(f"no event {event_id!r}")
    return rows[0].encode()


def _new_id() -> str:
    return "E" + datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(3).upper()


@router.post("/events", status_code=201, summary="Report an event",
             response_class=Response, responses={201: {"content": {GEOJSON: {}}}})
def create_event(
    body: EventIn, request: Request, state: State,
    user: Annotated[User, Depends(require_roles(WRITE_ROLES))],
) -> Response:
    event_id = body.id or _new_id()
    with state.engine.begin() as conn:
        if body.worker_id is not None and conn.execute(
            sa.text("SELECT 1 FROM workers WHERE id = :w"), {"w": body.worker_id}
        ).first() is None:
            raise BadRequest(f"unknown worker_id {body.worker_id!r}")
        conn.execute(sa.text("SELECT set_config('onemap.actor', :a, true)"), {"a": user.name})
        row = conn.execute(
            sa.text(
                "INSERT INTO events (id, category, priority, source, description, worker_id, "
                "reported_at, geom) "
                "VALUES (:id, :category, :priority, :source, :description, :worker_id, "
                "COALESCE(:reported_at, now()), ST_SetSRID(ST_MakePoint(:lon, :lat), 4490)) "
                "ON CONFLICT (id) DO NOTHING RETURNING id"
            ),
            {"id": event_id, "category": body.category, "priority": body.priority, "source": body.source,
             "description": body.description, "worker_id": body.worker_id,
             "reported_at": body.reported_at, "lon": body.lon, "lat": body.lat},
        ).first()
        if row is None:
            raise Conflict(f"event {event_id!r} already exists")
        feature = _event_feature(conn, event_id, user)
    # committed: only now acknowledge
    return Response(feature, status_code=201, media_type=GEOJSON,
                    headers={"location": f"/collections/events/items/{event_id}"})


@router.patch("/events/{event_id}", summary="Change an event's status (lifecycle transition)",
              response_class=Response, responses={
                  200: {"content": {GEOJSON: {}}},
                  409: {"description": "Illegal transition; `allowed` lists the legal targets."}})
def change_status(
    event_id: str, body: StatusChange, state: State,
    user: Annotated[User, Depends(require_roles(TRANSITION_ROLES))],
) -> Response:
    import psycopg

    with state.engine.begin() as conn:
        current = conn.execute(
            sa.text("SELECT status FROM events WHERE id = :id FOR UPDATE"), {"id": event_id}
        ).scalar_one_or_none()
        if current is None:
            raise NotFound(f"no event {event_id!r}")
        try:
            lifecycle.check_transition(current, body.status)
        except lifecycle.IllegalTransition as exc:
            raise Conflict(str(exc), allowed=list(exc.allowed), current=current) from None
        if body.worker_id is not None:
            known = conn.execute(sa.text("SELECT 1 FROM workers WHERE id = :w"), {"w": body.worker_id})
            if known.first() is None:
                raise BadRequest(f"unknown worker_id {body.worker_id!r}")
            conn.execute(sa.text("UPDATE events SET worker_id = :w WHERE id = :id"),
                         {"w": body.worker_id, "id": event_id})
        try:
            with conn.begin_nested():
                conn.execute(sa.text("SELECT 1 FROM event_set_status(:id, :st, :actor, :note)"),
                             {"id": event_id, "st": body.status, "actor": body.actor or user.name,
                              "note": body.note})
        except sa.exc.DBAPIError as exc:
            orig = exc.orig
            if isinstance(orig, psycopg.Error) and orig.sqlstate == lifecycle.ILLEGAL_TRANSITION_SQLSTATE:
                allowed = _allowed_from_detail(orig, current)
                raise Conflict(f"illegal event status transition {current} -> {body.status}",
                               allowed=allowed, current=current) from None
            raise
        feature = _event_feature(conn, event_id, user)
    return Response(feature, media_type=GEOJSON)


def _allowed_from_detail(err: Any, current: str) -> list[str]:
    try:
        return list(orjson.loads(err.diag.message_detail or "{}").get("allowed", []))
    except (orjson.JSONDecodeError, AttributeError):
        return lifecycle.allowed_transitions(current)


@router.get("/events/{event_id}/history", summary="Status history of one event")
def history(
    event_id: str, conn: DbConn,
    _: Annotated[User, Depends(require_roles(READ_ROLES))],
) -> Response:
    exists = conn.execute(sa.text("SELECT status FROM events WHERE id = :id"), {"id": event_id}).first()
    if exists is None:
        raise NotFound(f"no event {event_id!r}")
    rows = conn.execute(
        sa.text(
            "SELECT from_status, to_status, at, actor, note, recorded_at FROM event_status_history "
            "WHERE event_id = :id ORDER BY at, id"
        ),
        {"id": event_id},
    ).mappings().all()
    return Response(orjson.dumps({
        "event_id": event_id, "status": exists[0],
        "allowed": lifecycle.allowed_transitions(exists[0]),
        "history": [dict(r) for r in rows],
    }), media_type="application/json")
