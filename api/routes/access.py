"""Walking access to facilities (issue 16): one route per function of :mod:`gis.access`.

Planners and up (:attr:`~gis.policy.Permission.READ_ACCESS`); answers are aggregates only
(suppressed per-community counts, per-building times, candidate sites with rounded gains), never
person-level, so there is no privileged variant and nothing to audit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from api import access_models as m
from api.auth import User
from api.deps import DbConn, require
from api.routes.analytics import _call, _json, analytics_slot
from gis import access
from gis.policy import Permission

router = APIRouter(prefix="/analytics", tags=["analytics"], dependencies=[Depends(analytics_slot)])

AccessReader = Annotated[User, Depends(require(Permission.READ_ACCESS))]
KindQ = Annotated[m.Kind, Query(description="facility kind")]
MinutesQ = Annotated[int, Query(ge=1, le=60, description="walking minutes: 5, 10 or 15")]
SpeedQ = Annotated[float, Query(gt=0, le=10, description="walking speed in m/s: 1.2 (default) or 0.8 (elderly); "
                                                         "only these are published (suppression)")]


@router.get("/access", response_model=m.Access,
            summary="Walking access to the nearest facility of a kind: per community (suppressed), per building")
def access_summary(
    conn: DbConn, _: AccessReader, kind: KindQ = "service_station", minutes: MinutesQ = 15,
    speed: SpeedQ = 1.2, community: Annotated[str | None, Query(max_length=40)] = None,
    communities: Annotated[bool, Query(description="false: skip the per-community figures (the costly part)")] = True,
) -> Response:
    return _json(_call(access.access, conn, kind, minutes, speed, community, communities))


@router.get("/access/sites", response_model=list[m.Site],
            summary="Ranked candidate sites for new facilities (greedy maximal coverage of residents)")
def access_sites(
    conn: DbConn, _: AccessReader, kind: KindQ = "service_station", minutes: MinutesQ = 15,
    speed: SpeedQ = 1.2, n: Annotated[int, Query(ge=1, le=50)] = 5,
) -> Response:
    return _json(_call(access.sites, conn, kind, minutes, speed, n))


@router.get("/access/isochrones", response_model=m.IsochroneCollection,
            summary="Road edges with the walking minutes from the nearest facility (GeoJSON, 5/10/15 bands)")
def access_isochrones(conn: DbConn, _: AccessReader, kind: KindQ = "service_station", speed: SpeedQ = 1.2) -> Response:
    return _json(_call(access.isochrone_edges, conn, kind, speed), "application/geo+json")
