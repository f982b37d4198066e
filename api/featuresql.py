"""SQL for OGC API – Features: item queries built with SQLAlchemy Core from the registry.

Each feature is serialised to GeoJSON by PostgreSQL (``json_build_object`` + ``ST_AsGeoJSON``),
so Python only joins strings: paging through large tables costs one round trip per page plus
one ``count(*)`` for ``numberMatched``.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from api.collections import Collection, Prop
from api.cql import CqlContext, check_bbox_area, parse_cql2_text, parse_instant, to_sql
from api.errors import BadRequest
from gis.dbroles import privileged_role

SRID = 4490
GEOJSON_DECIMALS = 7

_SA_TYPES: dict[str, Any] = {
    "string": sa.Text(), "integer": sa.BigInteger(), "number": sa.Float(), "boolean": sa.Boolean(),
    "datetime": sa.DateTime(timezone=True), "date": sa.Date(), "array": postgresql.ARRAY(sa.Text()),
}
#: properties a privileged population view does not have (selected as empty)
_PRIVILEGED_CONSTANTS: dict[str, ColumnElement[Any]] = {
    "suppressed": sa.literal_column("'{}'::text[]", postgresql.ARRAY(sa.Text())),
}


@dataclass(frozen=True)
class Source:
    """A collection bound to the relation actually read (public or privileged)."""

    coll: Collection
    privileged: bool
    role: str | None

    def table(self) -> sa.TableClause:
        name = self.coll.table
        if self.privileged and self.coll.privileged_table:
            name = self.coll.privileged_table
        schema, _, tname = name.rpartition(".")
        cols = [sa.column(self.coll.id_column, _SA_TYPES[self.coll.id_type]),
                sa.column(self.coll.geometry_column)]
        cols += [sa.column(p.name, _SA_TYPES[p.type]) for p in self.coll.properties
                 if not (self.privileged and p.name in _PRIVILEGED_CONSTANTS)]
        return sa.table(tname, *cols, schema=schema or None)

    def props(self) -> tuple[Prop, ...]:
        return self.coll.visible_properties(self.role)

    def column(self, t: sa.TableClause, name: str) -> ColumnElement[Any] | None:
        if name == self.coll.id_column or name == "id":
            return t.c[self.coll.id_column]
        prop = self.coll.prop(name)
        if prop is None or prop not in self.props():
            return None
        if self.privileged and self.coll.privileged_table and name in _PRIVILEGED_CONSTANTS:
            return _PRIVILEGED_CONSTANTS[name]
        return t.c[name]


@dataclass
class ItemQuery:
    limit: int
    offset: int = 0
    bbox: tuple[float, float, float, float] | None = None
    datetime: tuple[datetime | None, datetime | None] | None = None
    properties: list[str] | None = None
    sortby: list[tuple[str, bool]] | None = None  # (name, ascending)
    filter: str | None = None
    equals: dict[str, str] | None = None
    fid: str | None = None
    #: the area cap (km²) a CQL2 BBOX/ENVELOPE obeys, like ``bbox``
    max_bbox_area_km2: float | None = None


# -- parameter parsing ---------------------------------------------------------------------
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CRS84H = "http://www.opengis.net/def/crs/OGC/0/CRS84h"


def parse_bbox(text: str, bbox_crs: str | None, max_area_km2: float) -> tuple[float, float, float, float]:
    if bbox_crs not in (None, "", CRS84, CRS84H, "CRS84", "OGC:CRS84"):
        raise BadRequest(f"unsupported bbox-crs {bbox_crs!r}; only {CRS84}")
    try:
        nums = [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise BadRequest(f"invalid bbox {text!r}: expected minLon,minLat,maxLon,maxLat") from exc
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    if len(nums) != 4 or not all(math.isfinite(n) for n in nums):
        raise BadRequest(f"invalid bbox {text!r}: expected 4 (or 6) finite numbers")
    w, s, e, n = nums
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise BadRequest(f"bbox {text!r} outside lon/lat range")
    if w > e or s > n:
        raise BadRequest(f"bbox {text!r}: min must not exceed max (antimeridian crossing unsupported)")
    check_bbox_area(w, s, e, n, max_area_km2)
    return w, s, e, n


def parse_datetime(text: str) -> tuple[datetime | None, datetime | None]:
    """Instant (``t``), closed interval (``a/b``) or half-open (``../b``, ``a/..``, ``a/``)."""
    text = text.strip()
    if "/" not in text:
        if len(text) == 10:  # a date: the whole day
            start = parse_instant(text)
            return start, start + timedelta(days=1) - timedelta(microseconds=1)
        t = parse_instant(text)
        return t, t
    a, _, b = text.partition("/")
    start = None if a in ("", "..") else parse_instant(a)
    end = None if b in ("", "..") else parse_instant(b)
    if start is None and end is None:
        raise BadRequest("datetime interval must have at least one bound")
    if start and end and start > end:
        raise BadRequest(f"datetime interval {text!r} ends before it starts")
    return start, end


def parse_sortby(text: str) -> list[tuple[str, bool]]:
    out = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        asc = True
        if item[0] in "+-":
            asc = item[0] == "+"
            item = item[1:].strip()
        elif raw.startswith(" "):  # '+' decoded to a space
            asc = True
        out.append((item, asc))
    return out


def convert(prop: Prop, raw: str) -> Any:
    try:
        if prop.type == "integer":
            return int(raw)
        if prop.type == "number":
            return float(raw)
        if prop.type == "boolean":
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if prop.type == "datetime":
            return parse_instant(raw)
        if prop.type == "date":
            from datetime import date

            return date.fromisoformat(raw)
    except ValueError as exc:
        raise BadRequest(f"invalid value {raw!r} for property {prop.name!r} ({prop.type})") from exc
    return raw


# -- query building --------------------------------------------------------------------------
def _where(src: Source, t: sa.TableClause, q: ItemQuery, max_vertices: int) -> list[ColumnElement[bool]]:
    coll = src.coll
    geom = t.c[coll.geometry_column]
    conds: list[ColumnElement[bool]] = []
    if q.bbox:
        conds.append(sa.func.ST_Intersects(geom, sa.func.ST_MakeEnvelope(*q.bbox, SRID)))
    if q.datetime:
        if coll.datetime is None:
            raise BadRequest(f"collection {coll.id!r} has no time dimension: datetime not supported")
        start, end = q.datetime
        c0 = t.c[coll.datetime]
        c1 = t.c[coll.datetime_end] if coll.datetime_end else c0
        if end is not None:
            conds.append(c0 <= sa.bindparam(None, end, type_=sa.DateTime(timezone=True)))
        if start is not None:
            conds.append(c1 >= sa.bindparam(None, start, type_=sa.DateTime(timezone=True)))
    for name, raw in (q.equals or {}).items():
        if name in ("id", coll.id_column):
            prop: Prop | None = Prop(coll.id_column, coll.id_type)
        else:
            prop = coll.prop(name)
        col = src.column(t, name)
        if prop is None or col is None:
            raise BadRequest(f"unknown property {name!r}")
        conds.append(col == sa.bindparam(None, convert(prop, raw), type_=col.type))
    if q.filter:
        ctx = CqlContext(lambda n: src.column(t, n), geom, max_vertices, q.max_bbox_area_km2)
        conds.append(to_sql(parse_cql2_text(q.filter), ctx))
    if q.fid is not None:
        conds.append(t.c[coll.id_column] == q.fid)
    return conds


def _feature_json(src: Source, t: sa.TableClause, props: list[str]) -> ColumnElement[Any]:
    coll = src.coll
    args: list[Any] = []
    for name in props:
        col = src.column(t, name)
        assert col is not None
        args += [sa.literal(name, sa.Text), col]
    geom = t.c[coll.geometry_column]
    return sa.cast(
        sa.func.json_build_object(
            sa.literal("type", sa.Text), sa.literal("Feature", sa.Text),
            sa.literal("id", sa.Text), t.c[coll.id_column],
            sa.literal("geometry", sa.Text),
            sa.cast(sa.func.ST_AsGeoJSON(geom, GEOJSON_DECIMALS), postgresql.JSON),
            sa.literal("properties", sa.Text), sa.func.json_build_object(*args),
        ),
        sa.Text,
    )


def selected_properties(src: Source, q: ItemQuery) -> list[str]:
    visible = [p.name for p in src.props()]
    if q.properties is None:
        return visible
    unknown = [p for p in q.properties if p not in visible]
    if unknown:
        raise BadRequest(f"unknown properties {', '.join(unknown)}; available: {', '.join(visible)}")
    return [p for p in q.properties if p]


def query_items(conn: Connection, src: Source, q: ItemQuery, max_vertices: int,
                count: bool = True) -> tuple[list[str], int | None]:
    """GeoJSON texts of the page's features, and numberMatched."""
    t = src.table()
    conds = _where(src, t, q, max_vertices)
    props = selected_properties(src, q)
    stmt = sa.select(_feature_json(src, t, props)).select_from(t).where(*conds)
    order: list[Any] = []
    for name, asc in q.sortby or []:
        col = src.column(t, name)
        if col is None:
            raise BadRequest(f"cannot sort by unknown property {name!r}")
        order.append(col.asc().nulls_last() if asc else col.desc().nulls_last())
    order.append(t.c[src.coll.id_column].asc())
    stmt = stmt.order_by(*order).limit(q.limit).offset(q.offset)
    # person-level relations only as onemap_privileged (PostgreSQL refuses them to onemap_api)
    with privileged_role(conn) if src.privileged else nullcontext():
        try:
            rows = [r[0] for r in conn.execute(stmt)]
            matched = None
            if count:
                if q.offset == 0 and len(rows) < q.limit:
                    matched = len(rows)
                else:
                    matched = conn.execute(sa.select(sa.func.count()).select_from(t).where(*conds)).scalar_one()
        except sa.exc.DBAPIError as exc:
            raise _query_error(exc) from exc
    return rows, matched


def _query_error(exc: sa.exc.DBAPIError) -> Exception:
    """Bad input the database could only detect (invalid geometry, out-of-range value) → 400;
    anything else (connection loss, ...) is re-raised for the 503/500 handlers."""
    state = getattr(exc.orig, "sqlstate", None) or ""
    if state[:2] in ("22", "42") or state == "XX000":
        msg = str(getattr(exc.orig, "diag", None) and exc.orig.diag.message_primary or "invalid query")
        return BadRequest(f"the query could not be evaluated: {msg}")
    return exc


def extent(conn: Connection, coll: Collection) -> dict[str, Any]:
    """Spatial (CRS84 bbox) and temporal extent of a collection."""
    schema, _, tname = coll.table.rpartition(".")
    t = sa.table(tname, sa.column(coll.geometry_column), schema=schema or None)
    box = None
    if not schema and coll.table in ("events", "buildings", "shift_tracks"):
        try:
            with conn.begin_nested():
                box = conn.execute(
                    sa.select(sa.func.ST_EstimatedExtent(coll.table, coll.geometry_column))
                ).scalar_one()
        except sa.exc.DBAPIError:
            box = None
    if box is None:
        box = conn.execute(sa.select(sa.func.ST_Extent(t.c[coll.geometry_column]))).scalar_one()
    out: dict[str, Any] = {}
    if box:
        nums = [float(x) for x in box[box.index("(") + 1:box.index(")")].replace(",", " ").split()]
        out["spatial"] = {"bbox": [nums], "crs": CRS84}
    else:
        out["spatial"] = {"bbox": [[117.37, 32.92, 117.41, 32.95]], "crs": CRS84}
    if coll.datetime:
        tt = sa.table(tname, sa.column(coll.datetime), sa.column(coll.datetime_end or coll.datetime),
                      schema=schema or None)
        lo, hi = conn.execute(
            sa.select(sa.func.min(tt.c[coll.datetime]), sa.func.max(tt.c[coll.datetime_end or coll.datetime]))
        ).one()
        out["temporal"] = {"interval": [[_iso(lo), _iso(hi)]],
                           "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    return out


def _iso(v: datetime | None) -> str | None:
    if v is None:
        return None
    return v.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ExtentCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._data: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, conn: Connection, coll: Collection) -> dict[str, Any]:
        hit = self._data.get(coll.id)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        value = extent(conn, coll)
        self._data[coll.id] = (now + self.ttl_s, value)
        return value
