"""Event (case) writes and reads for the API: report, status transitions, history, categories.

Functions take the caller's ``Connection`` (its transaction: the API commits before it answers).
SQL lives in ``gis/sql/events/``. Errors are :mod:`core.errors` classes: unknown event →
:class:`NotFoundError`; duplicate id, illegal transition → :class:`ConflictError` (with
``allowed`` and ``current``); unknown worker or category → :class:`InputError`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from core.errors import ConflictError, InputError, NotFoundError
from gis import lifecycle
from gis.dberrors import db_errors
from gis.sqlfiles import sql

#: how long :func:`cached_categories` trusts its copy of the ``event_category`` table
CATEGORIES_MAX_AGE_S = 60.0


@dataclass(frozen=True)
class NewEvent:
    id: str
    category: str
    lon: float
    lat: float
    priority: str = "C"
    source: str = "grid_worker"
    description: str | None = None
    reported_at: datetime | None = None  # None: now()
    worker_id: str | None = None


def categories(bind: Connection | Engine) -> tuple[str, ...]:
    """The category codes of table ``event_category`` (the loaders check deliveries against it)."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return categories(conn)
    return tuple(r[0] for r in bind.execute(sql("events/categories")))


_cache: dict[str, tuple[float, tuple[str, ...]]] = {}
_cache_lock = threading.Lock()


def cached_categories(engine: Engine, max_age_s: float = CATEGORIES_MAX_AGE_S) -> tuple[str, ...]:
    """:func:`categories`, re-read at most every ``max_age_s`` per database."""
    key = engine.url.render_as_string(hide_password=True)
    hit = _cache.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    codes = categories(engine)
    with _cache_lock:
        _cache[key] = (time.monotonic() + max_age_s, codes)
    return codes


def _check_worker(conn: Connection, worker_id: str | None) -> None:
    if worker_id is not None and conn.execute(sql("events/worker_exists"), {"worker_id": worker_id}).first() is None:
        raise InputError(f"unknown worker_id {worker_id!r}")


def create_event(conn: Connection, event: NewEvent, actor: str) -> str:
    """Insert one event reported by ``actor``; returns its id."""
    _check_worker(conn, event.worker_id)
    with db_errors():
        conn.execute(sql("events/set_actor"), {"actor": actor})
        row = conn.execute(sql("events/insert"), {
            "id": event.id, "category": event.category, "priority": event.priority,
            "source": event.source, "description": event.description, "worker_id": event.worker_id,
            "reported_at": event.reported_at, "lon": event.lon, "lat": event.lat,
        }).first()
    if row is None:
        raise ConflictError(f"event {event.id!r} already exists")
    return event.id


def change_status(
    conn: Connection, event_id: str, status: str, actor: str,
    note: str | None = None, worker_id: str | None = None,
) -> None:
    """One lifecycle step (optionally assigning a worker), recorded in the status history."""
    current = conn.execute(sql("events/status_for_update"), {"id": event_id}).scalar_one_or_none()
    if current is None:
        raise NotFoundError(f"no event {event_id!r}")
    try:
        lifecycle.check_transition(current, status)
    except lifecycle.IllegalTransition as exc:
        raise ConflictError(str(exc), allowed=list(exc.allowed), current=current) from None
    if worker_id is not None:
        _check_worker(conn, worker_id)
        conn.execute(sql("events/assign_worker"), {"worker_id": worker_id, "id": event_id})
    with db_errors(), conn.begin_nested():
        conn.execute(sql("events/set_status"), {"id": event_id, "status": status, "actor": actor, "note": note})


def history(conn: Connection, event_id: str) -> dict[str, Any]:
    """``{event_id, status, allowed, history: [{from_status, to_status, at, actor, note, recorded_at}]}``."""
    status = conn.execute(sql("events/status"), {"id": event_id}).scalar_one_or_none()
    if status is None:
        raise NotFoundError(f"no event {event_id!r}")
    rows = conn.execute(sql("events/history"), {"id": event_id}).mappings().all()
    return {"event_id": event_id, "status": status, "allowed": lifecycle.allowed_transitions(status),
            "history": [dict(r) for r in rows]}
