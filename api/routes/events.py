"""Event writes: report (POST), status transitions (PATCH), history.

Routes parse and shape; the work (SQL in ``gis/sql/events/``) is in :mod:`gis.events`, whose
:mod:`core.errors` exceptions become HTTP statuses in ``api/errors.py``. Every acknowledged
write is committed before the response is sent. Status changes go through the database function
``event_set_status`` (records actor/note in the append-only history and NOTIFYs the live
stream); the allowed transitions come from :mod:`gis.lifecycle`. Categories are the rows of
table ``event_category`` (read through :func:`gis.events.cached_categories`).
"""

from __future__ import annotations

import secrets
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.auth import User, write_audit
from api.collections import COLLECTIONS
from api.deps import DbConn, State, client_addr, require
from api.featuresql import ItemQuery, Source, query_items
from core.errors import NotFoundError
from gis import events, lifecycle
from gis.accounts import DEVICE_ROLE
from gis.policy import Permission

router = APIRouter(tags=["events"])

GEOJSON = "application/geo+json"

#: the ``event_category`` codes, set per request by :func:`_known_categories` before the body
#: is validated (FastAPI solves dependencies first), read by :meth:`EventIn._known_category`
_CATEGORIES: ContextVar[tuple[str, ...] | None] = ContextVar("event_categories", default=None)


async def _known_categories(state: State) -> None:
    _CATEGORIES.set(await run_in_threadpool(events.cached_categories, state.engine))


class PointGeometry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["Point"]
    coordinates: tuple[float, float] | tuple[float, float, float]


class EventIn(BaseModel):
    """A new event. Position as ``lon``/``lat`` (CRS84) or a GeoJSON Point ``geometry``."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$", description="default: generated")
    category: str = Field(max_length=64, description="a code of table event_category (e.g. sanitation)")
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

    @field_validator("category")
    @classmethod
    def _known_category(cls, v: str) -> str:
        known = _CATEGORIES.get()
        if known is not None and v not in known:
            quoted = [repr(c) for c in known]
            expected = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return v

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
    actor: str | None = Field(None, max_length=100,
                              description="ignored as actor (the signed-in user is); kept in the note")
    note: str | None = Field(None, max_length=4000)
    worker_id: str | None = Field(None, max_length=40, description="assign a worker (on dispatch)")


def _event_feature(conn: Connection, event_id: str, user: User) -> bytes:
    src = Source(COLLECTIONS["events"], False, user.role)
    rows, _ = query_items(conn, src, ItemQuery(limit=1, fid=event_id), 0, count=False)
    if not rows:
        raise NotFoundError(f"no event {event_id!r}")
    return rows[0].encode()


def _new_id() -> str:
    return "E" + datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(3).upper()


def _device_rules(body: EventIn, user: User, skew_s: float) -> str:
    """Events from device accounts: the server chooses the id, the account the ``source``, and
    ``reported_at`` must be within ``skew_s`` of the server's clock (422 otherwise). Returns the source."""
    problems = []
    if body.id is not None:
        problems.append({"type": "value_error", "loc": ("body", "id"), "input": body.id,
                         "msg": "device accounts may not choose event ids (the server assigns one)"})
    if body.reported_at is not None:
        skew = abs((body.reported_at - datetime.now(UTC)).total_seconds())
        if skew > skew_s:
            problems.append({"type": "value_error", "loc": ("body", "reported_at"),
                             "input": body.reported_at.isoformat(),
                             "msg": f"reported_at is {skew:.0f} s from the server's clock; "
                                    f"devices may differ by at most {skew_s:.0f} s"})
    if problems:
        raise RequestValidationError(problems)
    return user.source or "grid_worker"


@router.post("/events", status_code=201, summary="Report an event",
             dependencies=[Depends(_known_categories)],
             response_class=Response, responses={201: {"content": {GEOJSON: {}}}})
def create_event(
    body: EventIn, request: Request, state: State,
    user: Annotated[User, Depends(require(Permission.REPORT_EVENTS))],
) -> Response:
    """Devices: the id is the server's, ``source`` the account's, ``reported_at`` near now."""
    assert body.lon is not None and body.lat is not None  # EventIn._position
    source = body.source
    if user.role == DEVICE_ROLE:
        source = _device_rules(body, user, state.settings.api.event_clock_skew_s)
    new = events.NewEvent(
        id=body.id or _new_id(), category=body.category, lon=body.lon, lat=body.lat,
        priority=body.priority, source=source, description=body.description,
        reported_at=body.reported_at, worker_id=body.worker_id,
    )
    with state.engine.begin() as conn:
        event_id = events.create_event(conn, new, actor=user.name)
        details = {"category": new.category, "source": source, "reported_at": new.reported_at}
        if source != body.source and "source" in body.model_fields_set:
            details["client_source"] = body.source
        write_audit(conn, user, "event.create", event_id, details, client_addr(request), ids=[event_id])
        feature = _event_feature(conn, event_id, user)
    # committed: only now acknowledge
    return Response(feature, status_code=201, media_type=GEOJSON,
                    headers={"location": f"/collections/events/items/{event_id}"})


@router.patch("/events/{event_id}", summary="Change an event's status (lifecycle transition)",
              response_class=Response, responses={
                  200: {"content": {GEOJSON: {}}},
                  409: {"description": "Illegal transition; `allowed` lists the legal targets."}})
def change_status(
    event_id: str, body: StatusChange, request: Request, state: State,
    user: Annotated[User, Depends(require(Permission.CHANGE_EVENT_STATUS))],
) -> Response:
    """The history's ``actor`` is always the signed-in user; an ``actor`` in the body is kept in the note."""
    note = body.note
    if body.actor and body.actor != user.name:
        note = f"[actor given: {body.actor}]" + (f" {note}" if note else "")
    with state.engine.begin() as conn:
        events.change_status(conn, event_id, body.status, actor=user.name, note=note, worker_id=body.worker_id)
        write_audit(conn, user, "event.status", event_id,
                    {"status": body.status, "worker_id": body.worker_id, "client_actor": body.actor},
                    client_addr(request), ids=[event_id])
        feature = _event_feature(conn, event_id, user)
    return Response(feature, media_type=GEOJSON)


@router.get("/events/{event_id}/history", summary="Status history of one event")
def history(
    event_id: str, conn: DbConn,
    _: Annotated[User, Depends(require(Permission.READ))],
) -> Response:
    return Response(orjson.dumps(events.history(conn, event_id)), media_type="application/json")
