"""Dispatch: suggestions by road-network ETA, sending a worker, the worker's steps, the queue and
the priority deadlines. The work is in :mod:`gis.dispatch`; every status change goes through the
event lifecycle (``event_set_status``: checked, in the history, NOTIFY'd) and every write leaves
an audit row. Periodic deadline escalation: :func:`escalation_loop` (started by the app, every
``dispatch_escalation_interval_s``). The fix freshness default is the setting
``dispatch_fix_max_age_s`` (settings group ``dispatch``, :mod:`core.settings`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from api.auth import User, write_audit
from api.deps import DbConn, State, client_addr, require
from core.settings import get_settings
from gis import dispatch
from gis.policy import Permission

log = logging.getLogger(__name__)

router = APIRouter(tags=["dispatch"])

Dispatcher = Annotated[User, Depends(require(Permission.DISPATCH))]
Worker = Annotated[User, Depends(require(Permission.WORK_EVENTS))]

def _default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(type(v).__name__)


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body, default=_default), status_code=status_code, media_type="application/json")


def _aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


class DispatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    worker_id: str | None = Field(None, max_length=40, description="default: the first suggestion")
    note: str | None = Field(None, max_length=4000)


class StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=4000)


class DeadlineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minutes: int = Field(gt=0, le=60 * 24 * 365)


MaxAge = Annotated[float | None, Query(gt=0, le=86400, description=(
    "a worker's fix must be at most this old (default: setting dispatch_fix_max_age_s, 300 s)"))]


def _max_age(state: Any, value: float | None) -> float:
    return state.settings.dispatch.dispatch_fix_max_age_s if value is None else value


@router.get("/events/{event_id}/dispatch/suggestions",
            summary="Available workers for an event, ranked by road-network ETA")
def suggestions(
    event_id: str, conn: DbConn, state: State, _: Dispatcher,
    n: Annotated[int, Query(ge=1, le=50)] = 5,
    max_age_s: MaxAge = None,
    at: Annotated[datetime | None, Query(description="evaluate availability at this time (default now)")] = None,
) -> Response:
    return _json(dispatch.suggestions(conn, event_id, _aware(at), n, _max_age(state, max_age_s)))


@router.post("/events/{event_id}/dispatch", summary="Dispatch a worker (chosen, or the first suggestion)")
def dispatch_event(
    event_id: str, request: Request, state: State, user: Dispatcher, body: DispatchIn | None = None,
    max_age_s: MaxAge = None,
) -> Response:
    body = body or DispatchIn()
    with state.engine.begin() as conn:
        out = dispatch.dispatch(conn, event_id, actor=user.name, worker_id=body.worker_id, note=body.note,
                                max_fix_age_s=_max_age(state, max_age_s))
        write_audit(conn, user, "event.dispatch", event_id,
                    {"worker_id": out["worker_id"], "suggested": out["suggested"], "eta_s": out["eta_s"]},
                    client_addr(request), ids=[event_id])
    return _json(out)


def _step_route(action: Literal["accept", "arrive", "resolve"]) -> None:
    def step(event_id: str, request: Request, state: State, user: Worker, body: StepIn | None = None) -> Response:
        devices = frozenset(getattr(user, "devices", frozenset())) if user.role == "device" else None
        with state.engine.begin() as conn:
            out = dispatch.worker_step(conn, event_id, action, actor=user.name, devices=devices,
                                       note=body.note if body else None)
            write_audit(conn, user, f"event.{action}", event_id, {"status": out["status"]},
                        client_addr(request), ids=[event_id])
        return _json(out)

    step.__name__ = f"event_{action}"
    router.add_api_route(f"/events/{{event_id}}/{action}", step, methods=["POST"],
                         summary=f"The dispatched worker's step: {action} "
                                 f"(-> {dispatch.WORKER_STEPS[action]})")


for _action in ("accept", "arrive", "resolve"):
    _step_route(_action)  # type: ignore[arg-type]


@router.get("/dispatch/queue", summary="Events not yet handled: priority A first, then oldest")
def queue(
    conn: DbConn, _: Dispatcher,
    status: Literal["reported", "accepted", "dispatched", "en_route", "on_scene"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    return _json(dispatch.queue(conn, status=status, limit=limit))


@router.get("/dispatch/deadlines", summary="Deadline minutes per priority")
def deadlines(conn: DbConn, _: Dispatcher) -> Response:
    return _json(dispatch.deadlines(conn))


@router.patch("/dispatch/deadlines/{priority}", summary="Change a priority's deadline (new events)")
def set_deadline(
    priority: Literal["A", "B", "C", "D"], body: DeadlineIn, request: Request, state: State, user: Dispatcher,
) -> Response:
    with state.engine.begin() as conn:
        row = dispatch.set_deadline(conn, priority, body.minutes, actor=user.name)
        write_audit(conn, user, "dispatch.deadline", priority, {"minutes": body.minutes}, client_addr(request),
                    ids=[priority])
    return _json(row)


async def escalation_loop(engine: Any, interval_s: float | None = None) -> None:
    """Every ``interval_s`` (default: setting ``dispatch_escalation_interval_s``): raise
    ``deadline_missed`` alarms (once per event, whichever server
    process gets there first). Errors are logged and retried next round."""
    if interval_s is None:
        interval_s = get_settings().dispatch.dispatch_escalation_interval_s

    def once() -> int:
        with engine.begin() as conn:
            return dispatch.escalate(conn)

    while True:
        try:
            n = await asyncio.to_thread(once)
            if n:
                log.info("escalated %d missed deadlines", n)
        except Exception:  # noqa: BLE001 - the database may be down for a while; try again later
            log.warning("deadline escalation failed; retrying in %.0f s", interval_s, exc_info=True)
        await asyncio.sleep(interval_s)
