"""Response shapes of the walking-access routes (``/analytics/access*``, :mod:`api.routes.access`).

Declared for the OpenAPI document; ``tests/test_api_access.py`` validates real answers against
them. Counts of people are suppressed aggregates (None when withheld, named in ``suppressed``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.analytics_models import Geometry, _Shape

Kind = Literal["service_station", "service_terminal", "elderly_care", "clinic", "school", "police",
               "convenience_store"]


class CommunityAccess(_Shape):
    community_id: str
    name: str | None
    grp: Literal["total", "age_80_plus", "disabled", "low_income"] = Field(
        description="residents, aged 80+, disabled, low-income (低保)")
    residents: int | None = Field(description="people of the group in the community (None: suppressed)")
    within_5: int | None = Field(description="of them within 5 minutes' walk (None: suppressed)")
    within_10: int | None
    within_15: int | None
    share_5: float | None = Field(description="within_5 / residents (None unless both are published)")
    share_10: float | None
    share_15: float | None
    suppressed: list[str] = Field(
        description="counts withheld (1 to 4 people, or a difference of published figures would be)")


class BuildingAccess(_Shape):
    building_id: str
    community_id: str | None
    facility_id: str | None = Field(description="the nearest facility of the kind (None: unreachable)")
    walk_m: float | None = Field(description="metres: building -> road -> facility")
    walk_min: float | None = Field(description="minutes at the requested speed")


class UncoveredBuilding(_Shape):
    building_id: str
    community_id: str | None
    walk_min: float | None = Field(description="minutes to the nearest facility (None: unreachable)")


class Access(_Shape):
    kind: Kind
    speed: float = Field(description="walking speed, m/s")
    minutes: int = Field(description="threshold for `uncovered`")
    communities: list[CommunityAccess] = Field(description="empty when communities=false")
    buildings: list[BuildingAccess]
    uncovered: list[UncoveredBuilding] = Field(description="buildings not within `minutes` of a facility")


class Site(_Shape):
    rank: int
    vertex_id: int = Field(description="road_vertices id of the candidate")
    lon: float
    lat: float
    residents_added: int = Field(description="residents newly within `minutes`, rounded to a multiple of 5")
    buildings_added: int


class IsochroneProperties(_Shape):
    minutes: float | None = Field(description="walking minutes from the nearest facility to the edge's nearer end")
    band: Literal[5, 10, 15] | None = Field(description="the first of 5/10/15 minutes reached (None: beyond 15)")


class IsochroneFeature(_Shape):
    type: Literal["Feature"]
    id: int
    geometry: Geometry
    properties: IsochroneProperties


class IsochroneMeta(_Shape):
    kind: Kind
    speed: float


class IsochroneCollection(_Shape):
    type: Literal["FeatureCollection"]
    features: list[IsochroneFeature]
    meta: IsochroneMeta
