"""``POST /gps/fixes``: batches of GPS fixes from devices.

A device account may post only for the device ids bound to it (``onemap users add --device``):
a batch naming any other device id is refused whole with 403, listing the offending ids. Every
batch leaves an audit row (who, how many, which devices). Each fix is validated on its own;
invalid ones are reported in ``rejected`` (index, device and field errors) while the valid ones
are stored by :func:`gis.gps.store_fixes` (which refuses unknown devices and fixes already
stored; its insert fires the PostGIS trigger that updates ``worker_positions`` and NOTIFYs
``position`` messages to the live stream).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import Response

from api.auth import User, write_audit
from api.deps import AppState, State, client_addr, require
from api.errors import PayloadTooLarge
from core.errors import PermissionDeniedError
from gis import gps
from gis.accounts import DEVICE_ROLE
from gis.policy import Permission

router = APIRouter(tags=["gps"])

class Fix(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(min_length=1, max_length=40)
    t: datetime
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    speed: float | None = Field(None, ge=0, le=100, description="m/s")
    accuracy: float | None = Field(None, ge=0, le=10_000, description="m")
    sos: bool = Field(False, description="the device's SOS button is pressed (raises an sos alarm)")

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
    request: Request,
    state: State,
    user: Annotated[User, Depends(require(Permission.POST_FIXES))],
    fixes: Annotated[list[Any], Body(description="[{device_id, t, lon, lat, speed, accuracy, sos}]")],
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
    if user.role == DEVICE_ROLE:
        _check_bound(state, user, fixes, client_addr(request))
    accepted = 0
    by_index = {i: fix for i, fix in good}
    with state.engine.begin() as conn:
        if good:
            accepted, refused = gps.store_fixes(conn, [
                (i, gps.GpsFix(f.device_id, f.t, f.lon, f.lat, f.speed, f.accuracy, f.sos)) for i, f in good])
            rejected += [_reject(r.index, by_index[r.index], r.field, r.msg) for r in refused]
        write_audit(conn, user, "gps.fixes", None, {"accepted": accepted, "rejected": len(rejected)},
                    client_addr(request), ids=sorted({f.device_id for _, f in good}))
    rejected.sort(key=lambda r: r["index"])
    return Response(orjson.dumps({"accepted": accepted, "rejected": rejected}), status_code=202,
                    media_type="application/json")


def _check_bound(state: AppState, user: User, fixes: list[Any], client: str | None) -> None:
    """A device account posts only for the device ids bound to it: any other id refuses the
    whole batch (403 listing the offending ids; nothing is stored) and is audited."""
    ids = {raw.get("device_id") for raw in fixes if isinstance(raw, dict)}
    offending = sorted(str(d) for d in ids if d is not None and d not in user.devices)
    if not offending:
        return
    with state.engine.begin() as conn:
        write_audit(conn, user, "gps.fixes_refused", None, {"offending": offending}, client, ids=offending)
    bound = ", ".join(sorted(user.devices)) or "none"
    raise PermissionDeniedError(
        f"device account {user.name!r} may post fixes only for its devices ({bound}); "
        f"batch refused for device_id {', '.join(offending)}",
        hint="bind the device with `onemap users add NAME --role device --device ID`",
        device_ids=offending)


def _reject(index: int, fix: Fix, field: str, msg: str) -> dict[str, Any]:
    return {"index": index, "device_id": fix.device_id, "errors": [{"loc": [field], "msg": msg}]}
