"""``POST /gps/fixes``: batches of GPS fixes from devices.

Each fix is validated on its own; invalid ones are reported in ``rejected`` (index, device and
field errors) while the valid ones are stored. The insert fires the PostGIS trigger that
updates ``worker_positions`` and NOTIFYs ``position`` messages to the live stream.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import Response

from api.auth import User
from api.deps import State, require_roles
from api.errors import PayloadTooLarge

router = APIRouter(tags=["gps"])

GPS_ROLES = frozenset({"device", "admin"})


class Fix(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(min_length=1, max_length=40)
    t: datetime
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    speed: float | None = Field(None, ge=0, le=100, description="m/s")
    accuracy: float | None = Field(None, ge=0, le=10_000, description="m")

    @field_validator("t")
    @classmethod
    def _sane_time(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        if v > datetime.now(UTC) + timedelta(minutes=5):
            raise ValueError("t is in the future")
        if v.year < 2000:
            raise ValueError("t before 2000")
        return v


class FixesAccepted(BaseModel):
    accepted: int
    rejected: list[dict[str, Any]]


@router.post("/gps/fixes", status_code=202, response_model=FixesAccepted,
             summary="Store a batch of GPS fixes")
def post_fixes(
    state: State,
    user: Annotated[User, Depends(require_roles(GPS_ROLES))],
    fixes: Annotated[list[Any], Body(description="[{device_id, t, lon, lat, speed, accuracy}]")],
) -> Response:
    limit = state.settings.api.max_gps_batch
    if len(fixes) > limit:
        raise PayloadTooLarge(f"{len(fixes)} fixes in one batch; at most {limit}")
    good: list[tuple[int, Fix]] = []
    rejected: list[dict[str, Any]] = []
    seen: set[tuple[str, datetime]] = set()
    for i, raw in enumerate(fixes):
        try:
            fix = Fix.model_validate(raw)
        except ValidationError as exc:
            rejected.append({
                "index": i, "device_id": raw.get("device_id") if isinstance(raw, dict) else None,
                "errors": [{"loc": [str(x) for x in e["loc"]], "msg": e["msg"]} for e in exc.errors()],
            })
            continue
        if (fix.device_id, fix.t) in seen:
            rejected.append(_reject(i, fix, "t", "duplicate fix (device_id, t) in this batch"))
            continue
        seen.add((fix.device_id, fix.t))
        good.append((i, fix))
    accepted = 0
    if good:
        with state.engine.begin() as conn:
            devices = dict(conn.execute(
                sa.text("SELECT id, worker_id FROM devices WHERE id = ANY(:ids) AND active"),
                {"ids": sorted({f.device_id for _, f in good})},
            ).all())
            rows: list[tuple[int, Fix, str | None]] = []
            for i, fix in good:
                if fix.device_id not in devices:
                    rejected.append(_reject(i, fix, "device_id", "unknown or inactive device"))
                else:
                    rows.append((i, fix, devices[fix.device_id]))
            if rows:
                t0 = min(f.t for _, f, _ in rows)
                t1 = max(f.t for _, f, _ in rows)
                conn.execute(sa.text("SELECT ensure_gps_partitions(:a, :b)"), {"a": t0, "b": t1})
                inserted = conn.execute(
                    sa.text(
                        "INSERT INTO gps_fixes (device_id, worker_id, t, speed, accuracy, geom) "
                        "SELECT d, w, t, s, a, ST_SetSRID(ST_MakePoint(x, y), 4490) "
                        "FROM unnest(CAST(:d AS text[]), CAST(:w AS text[]), CAST(:t AS timestamptz[]), "
                        "CAST(:s AS real[]), CAST(:a AS real[]), CAST(:x AS float8[]), CAST(:y AS float8[])) "
                        "AS u(d, w, t, s, a, x, y) "
                        "ON CONFLICT DO NOTHING RETURNING device_id, t"
                    ),
                    {"d": [f.device_id for _, f, _ in rows], "w": [w for _, _, w in rows],
                     "t": [f.t for _, f, _ in rows], "s": [f.speed for _, f, _ in rows],
                     "a": [f.accuracy for _, f, _ in rows], "x": [f.lon for _, f, _ in rows],
                     "y": [f.lat for _, f, _ in rows]},
                ).all()
                accepted = len(inserted)
                stored = {(d, t) for d, t in inserted}
                for i, fix, _ in rows:
                    if (fix.device_id, fix.t) not in stored:
                        rejected.append(_reject(i, fix, "t", "duplicate fix (device_id, t) already stored"))
    rejected.sort(key=lambda r: r["index"])
    return Response(orjson.dumps({"accepted": accepted, "rejected": rejected}), status_code=202,
                    media_type="application/json")


def _reject(index: int, fix: Fix, field: str, msg: str) -> dict[str, Any]:
    return {"index": index, "device_id": fix.device_id, "errors": [{"loc": [field], "msg": msg}]}
