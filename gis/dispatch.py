"""Dispatch: who should go (available workers ranked by road-network ETA), sending them through
the event lifecycle, the worker's steps, the priority queue, deadlines and their escalation.

Available at ``now`` = active, on duty (``duty_roster``), not busy with another event (one in
``dispatched``/``en_route``/``on_scene``, dispatched in the ``dispatch_busy_window_h`` before
``now``), and a fix no older than ``max_fix_age_s`` (their last fix is where they are; default
the setting ``dispatch_fix_max_age_s``; settings group ``dispatch`` in :mod:`core.settings`).
Ranked by ETA over the road graph (:mod:`gis.routing`): from the graph vertex nearest the
worker's fix to the one nearest the event, walking for grid workers, driving for vehicles.
Every status change goes through :func:`gis.events.change_status` (the database checks the
step against ``event_transition`` and appends it to the history).
SQL lives in ``gis/sql/dispatch/``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal

from sqlalchemy import Connection

from core.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError
from core.settings import get_settings
from gis import events, lifecycle
from gis.routing import add_network
from gis.sqlfiles import sql

#: how many available workers (nearest by straight line) get a road-network ETA
DEFAULT_CANDIDATES: Final[int] = 25
#: deadlines missed longer ago than this are history, not escalated
ESCALATION_LOOKBACK_S: Final[float] = 86400.0
#: the dispatched worker's steps (device role): action -> status
WORKER_STEPS: Final[dict[str, str]] = {"accept": "en_route", "arrive": "on_scene", "resolve": "handled"}
PRIORITIES: Final[tuple[str, ...]] = ("A", "B", "C", "D")

WorkerStep = Literal["accept", "arrive", "resolve"]


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise InputError(f"naive datetime {now.isoformat()}: give a timezone")
    return now


def max_fix_age_s() -> float:
    """A worker whose newest fix is older than this is not available (setting
    ``dispatch_fix_max_age_s``)."""
    return get_settings().dispatch.dispatch_fix_max_age_s


def _age(value: float | None) -> float:
    return max_fix_age_s() if value is None else float(value)


def _busy_s() -> float:
    return get_settings().dispatch.dispatch_busy_window_h * 3600.0


def _plain(row: Any) -> dict[str, Any]:
    return {k: float(v) if isinstance(v, Decimal) else v for k, v in dict(row).items()}


def _event(conn: Connection, event_id: str, lock: bool = False) -> dict[str, Any]:
    name = "dispatch/event_for_update" if lock else "dispatch/event"
    row = conn.execute(sql(name), {"id": event_id}).mappings().first()
    if row is None:
        raise NotFoundError(f"no event {event_id!r}")
    return _plain(row)


def available_workers(
    conn: Connection, lon: float, lat: float, now: datetime | None = None,
    max_fix_age_s: float | None = None, limit: int = DEFAULT_CANDIDATES, event_id: str | None = None,
) -> list[dict[str, Any]]:
    """Workers available at ``now`` nearest (straight line) to (lon, lat), at most ``limit``:
    ``[{worker_id, name, kind, grid_id, mode, device_id, t, lon, lat, fix_age_s, distance_m}]``.
    ``event_id``: a worker busy with that very event still counts as available (re-dispatch)."""
    rows = conn.execute(sql("dispatch/candidates"), {
        "lon": float(lon), "lat": float(lat), "now": _now(now), "max_age_s": _age(max_fix_age_s),
        "k": int(limit), "event_id": event_id, "busy_s": _busy_s()}).mappings().all()
    return [_plain(r) for r in rows]


def suggestions(
    conn: Connection, event_id: str, now: datetime | None = None, n: int = 5,
    max_fix_age_s: float | None = None, candidates: int = DEFAULT_CANDIDATES,
) -> dict[str, Any]:
    """Available workers for an event ranked by road-network ETA (unreachable ones last):
    ``{event_id, status, at, max_fix_age_s, suggestions: [{worker_id, ..., network_m, eta_s,
    route}]}``."""
    if n < 1:
        raise InputError("n must be >= 1")
    at = _now(now)
    max_fix_age_s = _age(max_fix_age_s)
    ev = _event(conn, event_id)
    workers = available_workers(conn, ev["lon"], ev["lat"], at, max_fix_age_s, max(candidates, n), event_id)
    ranked = add_network(conn, ev["lon"], ev["lat"], workers, by="straight")
    ranked.sort(key=lambda w: (w["eta_s"] is None, w["eta_s"] or 0.0, w["distance_m"], w["worker_id"]))
    return {"event_id": event_id, "status": ev["status"], "at": at, "max_fix_age_s": max_fix_age_s,
            "suggestions": ranked[:n]}


def dispatch(
    conn: Connection, event_id: str, actor: str, worker_id: str | None = None, note: str | None = None,
    now: datetime | None = None, max_fix_age_s: float | None = None,
) -> dict[str, Any]:
    """Send a worker to an event: the chosen ``worker_id``, else the first suggestion. A reported
    event is accepted first (both steps in the history). Refused (409) when the event cannot be
    dispatched from its status, the worker is inactive or busy with another event, or nobody is
    available. Returns ``{event_id, status, worker_id, suggested, network_m, eta_s, route}``."""
    max_fix_age_s = _age(max_fix_age_s)
    ev = _event(conn, event_id, lock=True)
    status = ev["status"]
    if status == "reported":
        pass  # accepted first, below
    elif not lifecycle.is_allowed(status, "dispatched"):
        allowed = lifecycle.allowed_transitions(status)
        raise ConflictError(f"event {event_id!r} is {status}: it cannot be dispatched",
                            allowed=allowed, current=status)
    chosen: dict[str, Any] | None = None
    suggested = worker_id is None
    if worker_id is None:
        ranked = suggestions(conn, event_id, now, n=1, max_fix_age_s=max_fix_age_s)["suggestions"]
        if not ranked:
            raise ConflictError(f"no worker is available for event {event_id!r} (on duty, not busy, "
                                f"a fix in the last {max_fix_age_s:g} s)", hint="choose a worker_id")
        chosen = ranked[0]
        worker_id = chosen["worker_id"]
    else:
        state = conn.execute(sql("dispatch/worker_state"), {
            "worker_id": worker_id, "event_id": event_id, "now": _now(now), "busy_s": _busy_s()}).mappings().first()
        if state is None:
            raise InputError(f"unknown worker_id {worker_id!r}")
        if not state["active"]:
            raise ConflictError(f"worker {worker_id!r} is not active")
        if state["busy_with"] is not None:
            raise ConflictError(f"worker {worker_id!r} is busy with event {state['busy_with']!r}",
                                busy_with=state["busy_with"])
        ranked = suggestions(conn, event_id, now, n=DEFAULT_CANDIDATES, max_fix_age_s=max_fix_age_s)["suggestions"]
        chosen = next((w for w in ranked if w["worker_id"] == worker_id), None)
    if status == "reported":
        events.change_status(conn, event_id, "accepted", actor=actor, note="accepted for dispatch")
    if chosen is not None and chosen["eta_s"] is not None:
        how = f"ETA {chosen['eta_s']:.0f} s, {chosen['network_m']:.0f} m by road"
    else:
        how = "no road-network ETA (not available now or unreachable)"
    text = f"dispatched {worker_id} ({'suggested' if suggested else 'chosen'}; {how})"
    events.change_status(conn, event_id, "dispatched", actor=actor,
                         note=text if note is None else f"{note} — {text}", worker_id=worker_id)
    return {"event_id": event_id, "status": "dispatched", "worker_id": worker_id, "suggested": suggested,
            "network_m": chosen["network_m"] if chosen else None,
            "eta_s": chosen["eta_s"] if chosen else None,
            "route": chosen["route"] if chosen else None}


def worker_step(
    conn: Connection, event_id: str, action: WorkerStep, actor: str,
    devices: frozenset[str] | None = None, note: str | None = None,
) -> dict[str, Any]:
    """The dispatched worker's step (accept -> en_route, arrive -> on_scene, resolve -> handled).
    ``devices``: the device ids of a device account, which may act only on events dispatched to
    their worker (None: no such restriction, e.g. an admin)."""
    if action not in WORKER_STEPS:
        raise InputError(f"unknown step {action!r}; known: {', '.join(WORKER_STEPS)}")
    ev = _event(conn, event_id, lock=True)
    if devices is not None:
        mine = ev["worker_id"] is not None and conn.execute(sql("dispatch/device_of_worker"), {
            "worker_id": ev["worker_id"], "devices": sorted(devices)}).first() is not None
        if not mine:
            raise PermissionDeniedError(f"event {event_id!r} is not dispatched to this device's worker")
    events.change_status(conn, event_id, WORKER_STEPS[action], actor=actor, note=note)
    return {"event_id": event_id, "status": WORKER_STEPS[action], "worker_id": ev["worker_id"]}


def queue(conn: Connection, now: datetime | None = None, status: str | None = None,
          limit: int = 100) -> list[dict[str, Any]]:
    """Events not yet handled, priority A first, then oldest: ``[{id, category, priority, status,
    worker_id, reported_at, deadline_at, seconds_left, overdue, lon, lat, grid_id}]``."""
    if status is not None and status not in lifecycle.UNHANDLED_STATUSES:
        raise InputError(f"status {status!r} is not a queue status; known: {', '.join(lifecycle.UNHANDLED_STATUSES)}")
    rows = conn.execute(sql("dispatch/queue"), {"now": _now(now), "status": status, "limit": int(limit)})
    return [_plain(r) for r in rows.mappings()]


def deadlines(conn: Connection) -> list[dict[str, Any]]:
    """``[{priority, minutes, updated_at, updated_by}]`` (table ``priority_deadline``)."""
    return [_plain(r) for r in conn.execute(sql("dispatch/deadlines")).mappings()]


def set_deadline(conn: Connection, priority: str, minutes: int, actor: str) -> dict[str, Any]:
    """Change a priority's deadline (minutes > 0); new events get it."""
    if priority not in PRIORITIES:
        raise InputError(f"priority {priority!r}: one of {', '.join(PRIORITIES)}")
    if int(minutes) <= 0:
        raise InputError(f"minutes must be > 0, got {minutes}")
    row = conn.execute(sql("dispatch/deadline_set"),
                       {"priority": priority, "minutes": int(minutes), "actor": actor}).mappings().first()
    if row is None:
        raise NotFoundError(f"no deadline row for priority {priority!r}")
    return _plain(row)


def escalate(conn: Connection, now: datetime | None = None,
             lookback_s: float = ESCALATION_LOOKBACK_S) -> int:
    """Raise a ``deadline_missed`` alarm for each event not handled by its deadline (missed in
    the last ``lookback_s``), once per event; the number raised. Safe from several processes."""
    return int(conn.execute(sql("dispatch/escalate"), {"now": now, "lookback_s": float(lookback_s)}).scalar_one())
