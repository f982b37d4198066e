"""Response shapes of the analytics routes, for the OpenAPI document (``/api``).

The routes still answer with orjson-encoded bodies (the big GeoJSON collections are not built
twice); these models declare the shape (``response_model``) and ``tests/test_api_analytics_models.py``
validates real answers against them, so the documentation cannot drift from the bodies.
Times are RFC 3339 strings, days ``YYYY-MM-DD``, lengths in metres unless named ``km``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Geometry(BaseModel):
    """A GeoJSON geometry in EPSG:4490 lon/lat (= CRS84 to a few cm)."""

    type: str
    coordinates: Any


# --- events -------------------------------------------------------------------------------------
class DensityProperties(_Shape):
    count: int
    name: str | None = Field(None, description="grid cell name (cell=grid)")
    i: int | None = Field(None, description="column of the square/hexagon (cell=square|hex)")
    j: int | None = Field(None, description="row of the square/hexagon (cell=square|hex)")


class DensityFeature(_Shape):
    type: Literal["Feature"]
    id: str = Field(description="grid cell id, or i_j")
    geometry: Geometry
    properties: DensityProperties


class DensityMeta(_Shape):
    cell: Literal["grid", "hex", "square"]
    size_m: float | None
    start: datetime
    end: datetime
    total: int


class DensityCollection(_Shape):
    type: Literal["FeatureCollection"]
    features: list[DensityFeature]
    meta: DensityMeta


class HotspotProperties(_Shape):
    i: int
    j: int
    count: int
    gi_z: float | None = Field(description="Getis-Ord Gi* z-score (null when undefined)")
    neighbours: int
    p: float | None = Field(description="two-sided normal p-value of gi_z")


class HotspotFeature(_Shape):
    type: Literal["Feature"]
    id: str
    geometry: Geometry
    properties: HotspotProperties


class HotspotMeta(_Shape):
    cell: Literal["square", "hex"]
    size_m: float
    distance_m: float
    start: datetime
    end: datetime


class HotspotCollection(_Shape):
    type: Literal["FeatureCollection"]
    features: list[HotspotFeature]
    meta: HotspotMeta


class SlaRow(_Shape):
    key: str | None = Field(description="category, grid cell id or worker id (null: none assigned)")
    total: int
    open: int
    overdue: int
    closed: int
    closed_late: int
    mean_close_s: float | None
    mean_stage_s: dict[str, float | None] = Field(description="status → mean seconds spent in it")


# --- patrols, cameras, alarms -------------------------------------------------------------------
class LineString(_Shape):
    """A GeoJSON LineString in EPSG:4490 lon/lat (= CRS84 to a few cm)."""

    type: Literal["LineString"]
    coordinates: list[list[float]]


class NearestPatroller(_Shape):
    worker_id: str
    name: str | None
    kind: str
    grid_id: str | None
    distance_m: float = Field(description="straight-line distance from the latest fix")
    fix_age_s: float
    lon: float
    lat: float
    t: datetime
    device_id: str | None
    network_m: float | None = Field(
        description="road-network distance between the graph vertices nearest the fix and the point "
                    "(pgRouting); null when unreachable")
    eta_s: float | None = Field(
        description="travel time along that path: walking (grid workers) or driving (vehicles) speed "
                    "per road class (table road_speed)")
    route: LineString | None = Field(description="fix -> road path -> point; null when unreachable")


class VisibleCamera(_Shape):
    camera_id: str
    name: str | None
    kind: str
    status: str
    stream_url: str | None
    distance_m: float
    slant_m: float
    bearing_deg: float | None


class Mileage(_Shape):
    worker_id: str
    name: str | None
    kind: str | None
    day: date
    km: float
    fixes: int
    spikes: int
    jitter: int
    gaps: int
    first_fix: datetime
    last_fix: datetime


class TrackProperties(_Shape):
    worker_id: str
    seg: int
    start: datetime
    end: datetime
    length_m: float
    points: int


class TrackFeature(_Shape):
    type: Literal["Feature"]
    geometry: Geometry
    properties: TrackProperties


class TrackMeta(_Shape):
    worker_id: str
    start: datetime
    end: datetime


class TrackCollection(_Shape):
    """format=geojson: one LineString per continuous segment."""

    type: Literal["FeatureCollection"]
    features: list[TrackFeature]
    meta: TrackMeta


#: format=czml: a CZML document (list of packets) for Cesium playback
CzmlDocument = list[dict[str, Any]]


class RoadCoverage(_Shape):
    grid_id: str
    name: str | None
    road_m: float
    covered_m: float
    share: float | None
    day: date


class Checkins(_Shape):
    worker_id: str
    shift_start: datetime
    shift_end: datetime
    required: int
    visited: int
    share: float | None
    missed: list[str]
    visited_ids: list[str]


class Alarm(_Shape):
    id: int
    kind: str
    worker_id: str | None
    worker_name: str | None
    device_id: str | None
    geofence_id: str | None
    geofence_name: str | None
    t_start: datetime
    t_end: datetime | None
    raised_at: datetime
    created_at: datetime
    acknowledged_at: datetime | None
    details: dict[str, Any]
    lon: float
    lat: float


# --- population, KPIs ---------------------------------------------------------------------------
class Population(_Shape):
    level: Literal["building", "grid", "community"]
    id: str
    name: str | None
    total: int | None
    registered: int | None
    floating: int | None
    age_60_plus: int | None
    age_80_plus: int | None
    children_under_14: int | None
    special_care: int | None
    suppressed: list[str] = Field(description="counts withheld because they are below 5")


class Kpis(_Shape):
    events_today: dict[str, int] = Field(description="status → events reported today (local day)")
    overdue: int
    open: int
    patrollers_on_duty: int
    patrollers_total: int
    cameras_online: int
    cameras_total: int
    alarms_today: int
    now: datetime
