"""SQLAlchemy 2 declarative models of the overlay layers (created by migration ``0001_overlays``).

The migration is hand-written SQL; these models mirror it for ORM use (API, notebooks) and a test
compares table, column and index names of both. Every layer has ``geom`` in EPSG:4490 and a
stored generated ``geom_4548`` (EPSG:4548, metres) for metric analysis; never write ``geom_4548``.
Views (``population_by_*``) and functions are documented in docs/postgis.md.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    ARRAY,
    REAL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SRID_GEO = 4490  # CGCS2000 geographic (lon/lat degrees)
SRID_METRIC = 4548  # CGCS2000 / 3-degree Gauss-Kruger CM 117E (metres)
TRANSFORM_4548 = "ST_Transform(geom, 4548)"
RESTRICTED_SCHEMA = "restricted"


class Base(DeclarativeBase):
    pass


def _geom(kind: str, nullable: bool = False) -> Mapped[Any]:
    return mapped_column(Geometry(kind, srid=SRID_GEO, spatial_index=False), nullable=nullable)


def _geom_4548(kind: str) -> Mapped[Any]:
    return mapped_column(
        Geometry(kind, srid=SRID_METRIC, spatial_index=False), Computed(TRANSFORM_4548, persisted=True),
        nullable=True,
    )


def _attrs() -> Mapped[dict[str, Any]]:
    return mapped_column(JSONB, nullable=False, server_default=text("'{}'"))


def _tstz(nullable: bool = True) -> Mapped[Any]:
    return mapped_column(DateTime(timezone=True), nullable=nullable)


def _gist(table: str, column: str = "geom") -> Index:
    return Index(f"{table}_{column}_gix", column, postgresql_using="gist")


# --- reference layers -----------------------------------------------------------------------------
class Community(Base):
    __tablename__ = "communities"
    __table_args__ = (_gist("communities"), _gist("communities", "geom_4548"))

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    attrs: Mapped[dict[str, Any]] = _attrs()
    geom: Mapped[Any] = _geom("MULTIPOLYGON")
    geom_4548: Mapped[Any] = _geom_4548("MULTIPOLYGON")


class GridCell(Base):
    __tablename__ = "grid_cells"
    __table_args__ = (
        _gist("grid_cells"),
        _gist("grid_cells", "geom_4548"),
        Index("grid_cells_community_id_idx", "community_id"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    community_id: Mapped[str | None] = mapped_column(ForeignKey("communities.id", ondelete="SET NULL"))
    staff_id: Mapped[str | None] = mapped_column(Text)
    staff_name: Mapped[str | None] = mapped_column(Text)
    staff_phone: Mapped[str | None] = mapped_column(Text)
    attrs: Mapped[dict[str, Any]] = _attrs()
    geom: Mapped[Any] = _geom("MULTIPOLYGON")
    geom_4548: Mapped[Any] = _geom_4548("MULTIPOLYGON")


class Building(Base):
    """``id`` is the stable id carried by the 3D tiles' feature metadata (e.g. ``B000123``)."""

    __tablename__ = "buildings"
    __table_args__ = (
        _gist("buildings"),
        _gist("buildings", "geom_4548"),
        Index("buildings_grid_id_idx", "grid_id"),
        Index("buildings_community_id_idx", "community_id"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    floors: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[float | None] = mapped_column(Float)  # metres above ground
    use: Mapped[str | None] = mapped_column(Text)
    roof_type: Mapped[str | None] = mapped_column(Text)
    community_declared: Mapped[str | None] = mapped_column(Text)  # as delivered
    compound: Mapped[str | None] = mapped_column(Text)
    community_id: Mapped[str | None] = mapped_column(ForeignKey("communities.id", ondelete="SET NULL"))
    grid_id: Mapped[str | None] = mapped_column(ForeignKey("grid_cells.id", ondelete="SET NULL"))
    roof_height_m: Mapped[float | None] = mapped_column(
        Float, Computed("COALESCE(height, floors * 3.0, 3.0)", persisted=True)
    )
    attrs: Mapped[dict[str, Any]] = _attrs()
    geom: Mapped[Any] = _geom("MULTIPOLYGON")
    geom_4548: Mapped[Any] = _geom_4548("MULTIPOLYGON")


class Road(Base):
    __tablename__ = "roads"
    __table_args__ = (_gist("roads"), _gist("roads", "geom_4548"))

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    class_: Mapped[str | None] = mapped_column("class", Text)
    width: Mapped[float | None] = mapped_column(Float)
    lanes: Mapped[int | None] = mapped_column(Integer)
    bridge: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    deck_height: Mapped[float | None] = mapped_column(Float)
    attrs: Mapped[dict[str, Any]] = _attrs()
    geom: Mapped[Any] = _geom("MULTILINESTRING")
    geom_4548: Mapped[Any] = _geom_4548("MULTILINESTRING")


class Worker(Base):
    __tablename__ = "workers"
    __table_args__ = (Index("workers_grid_id_idx", "grid_id"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)  # grid_worker | vehicle
    grid_id: Mapped[str | None] = mapped_column(ForeignKey("grid_cells.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    attrs: Mapped[dict[str, Any]] = _attrs()


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (Index("devices_worker_id_idx", "worker_id"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    worker_id: Mapped[str | None] = mapped_column(ForeignKey("workers.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(Text, server_default=text("'gps'"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))


class Camera(Base):
    __tablename__ = "cameras"
    __table_args__ = (_gist("cameras"), _gist("cameras", "geom_4548"))

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)  # street | high_altitude
    mount_height: Mapped[float] = mapped_column(Float)  # metres above ground
    heading: Mapped[float] = mapped_column(Float)  # degrees clockwise from grid north (EPSG:4548)
    pitch: Mapped[float | None] = mapped_column(Float)
    hfov: Mapped[float] = mapped_column(Float)
    range_m: Mapped[float] = mapped_column(Float)
    stream_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'online'"))
    status_changed_at: Mapped[datetime | None] = _tstz()
    attrs: Mapped[dict[str, Any]] = _attrs()
    geom: Mapped[Any] = _geom("POINT")
    geom_4548: Mapped[Any] = _geom_4548("POINT")


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (
        _gist("checkpoints"),
        _gist("checkpoints", "geom_4548"),
        Index("checkpoints_grid_id_idx", "grid_id"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    grid_id: Mapped[str | None] = mapped_column(ForeignKey("grid_cells.id", ondelete="SET NULL"))
    radius_m: Mapped[float] = mapped_column(Float)
    geom: Mapped[Any] = _geom("POINT")
    geom_4548: Mapped[Any] = _geom_4548("POINT")


class Geofence(Base):
    __tablename__ = "geofences"
    __table_args__ = (
        _gist("geofences"),
        _gist("geofences", "geom_4548"),
        Index("geofences_worker_id_idx", "worker_id"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)  # no_parking | patrol_area
    worker_id: Mapped[str | None] = mapped_column(ForeignKey("workers.id", ondelete="SET NULL"))
    max_dwell_min: Mapped[float | None] = mapped_column(Float)
    geom: Mapped[Any] = _geom("MULTIPOLYGON")
    geom_4548: Mapped[Any] = _geom_4548("MULTIPOLYGON")


# --- events ---------------------------------------------------------------------------------------
class EventCategory(Base):
    __tablename__ = "event_category"

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    label_zh: Mapped[str] = mapped_column(Text)
    deadline_hours: Mapped[float] = mapped_column(Float)


class EventTransition(Base):
    """Allowed status changes (same table as gis.lifecycle.TRANSITIONS)."""

    __tablename__ = "event_transition"

    from_status: Mapped[str] = mapped_column(Text, primary_key=True)
    to_status: Mapped[str] = mapped_column(Text, primary_key=True)
    action: Mapped[str] = mapped_column(Text)


class Event(Base):
    """A case. Change ``status`` only through ``event_set_status()`` (or a plain UPDATE): the
    database refuses illegal transitions (SQLSTATE OM409) and appends to the history."""

    __tablename__ = "events"
    __table_args__ = (
        _gist("events"),
        _gist("events", "geom_4548"),
        # covering: the time-window analytics are index-only scans (migration 0002)
        Index(
            "events_reported_at_cover_idx",
            "reported_at",
            postgresql_include=["category", "grid_id", "id", "geom_4548"],
        ),
        Index("events_category_reported_at_idx", "category", "reported_at"),
        Index("events_grid_id_idx", "grid_id"),
        Index("events_worker_id_idx", "worker_id"),
        Index("events_building_id_idx", "building_id"),
        Index(
            "events_open_deadline_idx",
            "deadline_at",
            postgresql_where=text("status NOT IN ('closed', 'rejected')"),
        ),
        CheckConstraint("priority IN ('A', 'B', 'C', 'D')"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    category: Mapped[str] = mapped_column(ForeignKey("event_category.code"))
    priority: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'reported'"))
    worker_id: Mapped[str | None] = mapped_column(ForeignKey("workers.id", ondelete="SET NULL"))
    building_id: Mapped[str | None] = mapped_column(ForeignKey("buildings.id", ondelete="SET NULL"))
    grid_id: Mapped[str | None] = mapped_column(ForeignKey("grid_cells.id", ondelete="SET NULL"))
    community_id: Mapped[str | None] = mapped_column(ForeignKey("communities.id", ondelete="SET NULL"))
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    accepted_at: Mapped[datetime | None] = _tstz()
    dispatched_at: Mapped[datetime | None] = _tstz()
    handled_at: Mapped[datetime | None] = _tstz()
    verified_at: Mapped[datetime | None] = _tstz()
    closed_at: Mapped[datetime | None] = _tstz()
    rejected_at: Mapped[datetime | None] = _tstz()
    deadline_at: Mapped[datetime | None] = _tstz()
    reopened_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    geom: Mapped[Any] = _geom("POINT")
    geom_4548: Mapped[Any] = _geom_4548("POINT")


class EventStatusHistory(Base):
    """Append-only (UPDATE/DELETE raise SQLSTATE OM405); written by triggers on ``events``."""

    __tablename__ = "event_status_history"
    __table_args__ = (
        Index("event_status_history_event_id_at_idx", "event_id", "at"),
        Index("event_status_history_at_brin", "at", postgresql_using="brin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))


# --- tracks ---------------------------------------------------------------------------------------
class GpsFix(Base):
    """Partitioned by RANGE (t), one partition per UTC month (``ensure_gps_partitions``)."""

    __tablename__ = "gps_fixes"
    __table_args__ = (
        Index("gps_fixes_worker_id_t_idx", "worker_id", "t"),
        Index("gps_fixes_t_brin", "t", postgresql_using="brin"),
        _gist("gps_fixes"),
        {"postgresql_partition_by": "RANGE (t)"},
    )

    device_id: Mapped[str] = mapped_column(Text, primary_key=True)
    worker_id: Mapped[str | None] = mapped_column(Text)
    t: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    speed: Mapped[float | None] = mapped_column(REAL)
    accuracy: Mapped[float | None] = mapped_column(REAL)
    geom: Mapped[Any] = _geom("POINT")
    geom_4548: Mapped[Any] = _geom_4548("POINT")


class WorkerPosition(Base):
    """Latest fix per worker, maintained by the gps_fixes insert trigger (KNN target)."""

    __tablename__ = "worker_positions"
    __table_args__ = (_gist("worker_positions"), _gist("worker_positions", "geom_4548"))

    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[str] = mapped_column(Text)
    t: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    speed: Mapped[float | None] = mapped_column(REAL)
    accuracy: Mapped[float | None] = mapped_column(REAL)
    geom: Mapped[Any] = _geom("POINT")
    geom_4548: Mapped[Any] = _geom_4548("POINT")


class ShiftTrack(Base):
    """Derived by ``derive_shift_tracks()`` from cleaned fixes (spikes and jitter removed)."""

    __tablename__ = "shift_tracks"
    __table_args__ = (
        UniqueConstraint("worker_id", "shift_start", name="shift_tracks_worker_start_uq"),
        Index("shift_tracks_day_idx", "day"),
        _gist("shift_tracks"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)  # local (Asia/Shanghai) date of shift_start
    shift_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    shift_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    n_fixes: Mapped[int] = mapped_column(Integer)
    n_spikes: Mapped[int] = mapped_column(Integer)
    n_jitter: Mapped[int] = mapped_column(Integer)
    length_m: Mapped[float] = mapped_column(Float)
    geom: Mapped[Any] = _geom("MULTILINESTRING", nullable=True)
    geom_4548: Mapped[Any] = _geom_4548("MULTILINESTRING")


class Checkin(Base):
    """Derived: a worker's fixes within a checkpoint's radius during one shift."""

    __tablename__ = "checkins"
    __table_args__ = (
        UniqueConstraint("checkpoint_id", "worker_id", "shift_start", name="checkins_uq"),
        Index("checkins_worker_id_first_t_idx", "worker_id", "first_t"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    checkpoint_id: Mapped[str] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"))
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"))
    shift_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_t: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_t: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    n_fixes: Mapped[int] = mapped_column(Integer)
    min_distance_m: Mapped[float] = mapped_column(Float)


class Alarm(Base):
    """Geofence alarms; inserts NOTIFY ``{"type": "alarm", ...}``."""

    __tablename__ = "alarms"
    __table_args__ = (
        UniqueConstraint(
            "kind",
            "worker_id",
            "geofence_id",
            "t_start",
            name="alarms_episode_uq",
            postgresql_nulls_not_distinct=True,
        ),
        Index("alarms_raised_at_idx", "raised_at"),
        _gist("alarms"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)  # left_patrol_area | no_parking_dwell
    worker_id: Mapped[str | None] = mapped_column(ForeignKey("workers.id", ondelete="SET NULL"))
    device_id: Mapped[str | None] = mapped_column(Text)
    geofence_id: Mapped[str | None] = mapped_column(ForeignKey("geofences.id", ondelete="SET NULL"))
    t_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    t_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    details: Mapped[dict[str, Any]] = _attrs()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    acknowledged_at: Mapped[datetime | None] = _tstz()
    geom: Mapped[Any] = _geom("POINT", nullable=True)
    geom_4548: Mapped[Any] = _geom_4548("POINT")


class AlarmWatermark(Base):
    __tablename__ = "alarm_watermark"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    t: Mapped[datetime | None] = _tstz()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))


# --- personal data (schema restricted: onemap_privileged only) -------------------------------------
class Person(Base):
    """Pseudonymous resident record. Planners read the suppressed ``population_by_*`` views."""

    __tablename__ = "persons"
    __table_args__ = (Index("persons_building_id_idx", "building_id"), {"schema": RESTRICTED_SCHEMA})

    person_id: Mapped[str] = mapped_column(Text, primary_key=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id"))
    unit: Mapped[int | None] = mapped_column(Integer)
    floor: Mapped[int | None] = mapped_column(Integer)
    birth_year: Mapped[int] = mapped_column(Integer)
    sex: Mapped[str | None] = mapped_column(Text)
    residence: Mapped[str] = mapped_column(Text)  # registered | floating
    care_flags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))


#: Views created by the migration (not mapped): suppressed aggregates for everyone, full ones in
#: schema ``restricted``.
POPULATION_VIEWS: dict[str, str] = {
    "building": "population_by_building",
    "grid": "population_by_grid",
    "community": "population_by_community",
}
POPULATION_FULL_VIEWS: dict[str, str] = {
    k: f"{RESTRICTED_SCHEMA}.{v}_full" for k, v in POPULATION_VIEWS.items()
}
POPULATION_COLUMNS: tuple[str, ...] = (
    "total",
    "registered",
    "floating",
    "age_60_plus",
    "age_80_plus",
    "children_under_14",
    "special_care",
)
SUPPRESSION_THRESHOLD = 5
DB_ROLES: tuple[str, ...] = ("onemap_reader", "onemap_writer", "onemap_privileged", "onemap_admin")
