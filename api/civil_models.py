"""Response shapes of the civil-affairs analytics routes (``api/routes/civil.py``) for ``/api``.

As in :mod:`api.analytics_models`, the routes answer with orjson-encoded bodies and these models
declare the shape. Counts that suppression withholds are ``null``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.analytics_models import Geometry


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- targets ------------------------------------------------------------------------------------
class Period(_Shape):
    start: str = Field(description="RFC 3339 time or YYYY-MM-DD day")
    end: str


class SeriesPoint(_Shape):
    month: str = Field(description="YYYY-MM")
    value: float | None


class TargetResult(_Shape):
    community_id: str | None = Field(description="null: the whole district")
    name: str | None
    baseline_value: float | None
    current_value: float | None
    achieved_change: float | None = Field(description="relative change against the baseline so far")
    expected_change: float | None = Field(description="the change expected by now, pro rata to the deadline")
    status: Literal["met", "on_track", "off_track", "missed", "no_data"]
    on_track: bool | None
    series: list[SeriesPoint] = []


class AccessSpec(_Shape):
    kind: str
    minutes: int
    speed: float
    residents: str


class Target(_Shape):
    id: str
    title: str
    metric: str = Field(description="events.count | events.closure_hours | events.on_time_rate | "
                                    "surveys.satisfaction | access.share")
    group: str | None = None
    categories: list[str] | None = None
    topic: str | None = None
    community: str | None = None
    baseline: Period | None
    current: Period
    access: AccessSpec | None = None
    change: float | None
    level: float | None
    direction: str | None
    deadline: str
    elapsed_fraction: float
    results: list[TargetResult]


class CommunityStatus(_Shape):
    community_id: str
    name: str | None
    on_track: int
    off_track: int
    status: Literal["on_track", "off_track", "no_data"]


class Targets(_Shape):
    file: str = Field(description="the targets file evaluated (ONEMAP_TARGETS_FILE)")
    as_of: str
    targets: list[Target]
    communities: list[CommunityStatus]


# --- camera coverage ----------------------------------------------------------------------------
class CommunityCoverage(_Shape):
    community_id: str | None
    name: str | None
    main_road_m: float
    covered_m: float
    share: float | None


class HotspotProperties(_Shape):
    gi_z: float
    area_m2: float
    seen_share: float


class HotspotFeature(_Shape):
    type: Literal["Feature"]
    id: str
    geometry: Geometry
    properties: HotspotProperties


class HotspotCollection(_Shape):
    type: Literal["FeatureCollection"]
    features: list[HotspotFeature]


class CameraSite(_Shape):
    rank: int
    road_id: str | None
    lon: float
    lat: float
    new_road_m: float
    new_hotspot: float
    score: float


class CameraCoverage(BaseModel):
    model_config = ConfigDict(extra="allow")

    main_road_classes: list[str]
    only_online: bool
    main_road_m: float
    covered_m: float
    share: float | None
    communities: list[CommunityCoverage]
    uncovered_hotspots: HotspotCollection
    hotspot_cells: int
    candidate_model: dict[str, Any] = Field(description="the candidate camera: mount, heading, fields of view, range")
    sites: list[CameraSite]


class ViewshedProperties(_Shape):
    camera_id: str
    name: str | None
    kind: str | None = Field(description="street | high_altitude")
    status: str | None
    area_m2: float


class ViewshedFeature(_Shape):
    type: Literal["Feature"]
    id: str
    geometry: Geometry | None
    properties: ViewshedProperties


class Viewsheds(_Shape):
    type: Literal["FeatureCollection"]
    features: list[ViewshedFeature]


# --- care ---------------------------------------------------------------------------------------
class CareCount(_Shape):
    community_id: str | None = Field(description="null: the whole district")
    name: str | None
    category: str = Field(description="care category code, '*' for all")
    households: int | None = Field(description="null where suppressed (fewer than 5 or isolable)")
    overdue: int | None
