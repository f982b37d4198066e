"""CQL2-text filters → SQLAlchemy Core expressions over whitelisted columns.

pygeofilter parses the text into an AST; this module walks that AST and builds SQLAlchemy
expressions. Attributes must be properties of the collection (or its geometry); literals become
bound parameters typed like the column they are compared with. Unsupported constructs → 400.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from pygeofilter import ast, values
from sqlalchemy.sql.elements import ColumnElement

from api.errors import BadRequest

GEOMETRY_NAMES = frozenset({"geometry", "geom"})
SRID = 4490


class CqlContext:
    """What a filter may reference: ``column(name)`` returns the SQL column or None."""

    def __init__(self, column: Callable[[str], ColumnElement[Any] | None], geometry: ColumnElement[Any],
                 max_vertices: int, max_area_km2: float | None = None) -> None:
        self.column = column
        self.geometry = geometry
        self.max_vertices = max_vertices
        #: a BBOX(...) / ENVELOPE obeys the same area cap as ``bbox=`` (ONEMAP_MAX_BBOX_AREA_KM2)
        self.max_area_km2 = max_area_km2


def bbox_area_km2(w: float, s: float, e: float, n: float) -> float:
    """Approximate area of a lon/lat box (km²)."""
    lat = math.radians((s + n) / 2)
    return abs(e - w) * 111.32 * math.cos(lat) * abs(n - s) * 110.57


def check_bbox_area(w: float, s: float, e: float, n: float, max_area_km2: float | None,
                    what: str = "bbox") -> None:
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (w, s, e, n)):
        raise BadRequest(f"{what}: coordinates must be finite numbers")
    if max_area_km2 is None:
        return
    area = bbox_area_km2(w, s, e, n)
    if area > max_area_km2:
        raise BadRequest(f"{what} covers {area:.0f} km², at most {max_area_km2:g} km² allowed")


def parse_cql2_text(text: str) -> ast.Node:
    from pygeofilter.parsers.cql2_text import parse

    if len(text) > 20_000:
        raise BadRequest("filter too long (more than 20000 characters)")
    try:
        return parse(rewrite_temporal(text))
    except Exception as exc:  # lark raises many error types
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadRequest(f"invalid CQL2-text filter: {msg}") from exc


def to_sql(node: Any, ctx: CqlContext) -> ColumnElement[bool]:
    try:
        return _cond(node, ctx)
    except BadRequest:
        raise
    except RecursionError as exc:
        raise BadRequest("filter nested too deeply") from exc
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        raise BadRequest(f"unsupported filter: {exc}") from exc


# pygeofilter's CQL2-text grammar only knows the infix form ``a T_BEFORE b`` and closed
# INTERVALs; CQL2 writes ``T_BEFORE(a, b)`` and ``INTERVAL('..', b)``. Rewrite (outside quotes).
_T_FUNC = re.compile(r"\bT_([A-Za-z]+)\s*\(")
_T_NAMES = {
    "AFTER": "T_AFTER", "BEFORE": "T_BEFORE", "CONTAINS": "T_CONTAINS", "DURING": "T_DURING",
    "EQUALS": "T_EQUALS", "FINISHEDBY": "T_ENDEDBY", "FINISHES": "T_ENDS", "INTERSECTS": "T_INTERSECTS",
    "MEETS": "T_MEETS", "METBY": "T_METBY", "OVERLAPPEDBY": "T_OVERLAPPEDBY", "OVERLAPS": "T_OVERLAPS",
    "STARTEDBY": "T_BEGUNBY", "STARTS": "T_BEGINS", "BEGINS": "T_BEGINS", "BEGUNBY": "T_BEGUNBY",
    "ENDS": "T_ENDS", "ENDEDBY": "T_ENDEDBY",
}
_OPEN_START = "'0001-01-01T00:00:00Z'"
_OPEN_END = "'9999-12-31T23:59:59Z'"
_INTERVAL = re.compile(r"INTERVAL\s*\(\s*('[^']*')\s*,\s*('[^']*')\s*\)", re.I)


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    spans, i = [], 0
    while i < len(text):
        if text[i] == "'":
            j = i + 1
            while j < len(text):
                if text[j] == "'" and text[j + 1:j + 2] == "'":
                    j += 2
                    continue
                if text[j] == "'":
                    break
                j += 1
            spans.append((i, j))
            i = j + 1
        else:
            i += 1
    return spans


def _in_quotes(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos <= b for a, b in spans)


def _split_call(text: str, start: int) -> tuple[list[str], int]:
    """Arguments of the call whose '(' is at ``start`` and the index after its ')'."""
    depth, args, cur, i, quote = 0, [], [], start, False
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == "'":
                if text[i + 1:i + 2] == "'":
                    cur.append("'")
                    i += 1
                else:
                    quote = False
        elif ch == "'":
            quote = True
            cur.append(ch)
        elif ch == "(":
            depth += 1
            if depth > 1:
                cur.append(ch)
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(cur))
                return args, i + 1
            cur.append(ch)
        elif ch == "," and depth == 1:
            args.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    raise BadRequest("invalid CQL2-text filter: unbalanced parentheses")


def rewrite_temporal(text: str, depth: int = 0) -> str:
    if depth > 50:
        raise BadRequest("filter nested too deeply")
    spans = _quoted_spans(text)
    for m in _T_FUNC.finditer(text):
        if _in_quotes(m.start(), spans):
            continue
        name = m.group(1).upper()
        args, end = _split_call(text, m.end() - 1)
        if len(args) != 2:
            raise BadRequest(f"T_{name} needs two arguments")
        a, b = (rewrite_temporal(x.strip(), depth + 1) for x in args)
        if name == "DISJOINT":
            repl = f"(NOT ({a} T_INTERSECTS {b}))"
        elif name in _T_NAMES:
            repl = f"({a} {_T_NAMES[name]} {b})"
        else:
            raise BadRequest(f"unknown temporal function T_{name}")
        return text[:m.start()] + repl + rewrite_temporal(text[end:], depth + 1)

    def _interval(m: re.Match[str]) -> str:
        lo = _OPEN_START if m.group(1) in ("'..'", "''") else m.group(1)
        hi = _OPEN_END if m.group(2) in ("'..'", "''") else m.group(2)
        return f"INTERVAL({lo}, {hi})"

    return _INTERVAL.sub(_interval, text)


# -- conditions ------------------------------------------------------------------------------
def _cond(node: Any, ctx: CqlContext) -> ColumnElement[bool]:
    if isinstance(node, ast.And):
        return sa.and_(_cond(node.lhs, ctx), _cond(node.rhs, ctx))
    if isinstance(node, ast.Or):
        return sa.or_(_cond(node.lhs, ctx), _cond(node.rhs, ctx))
    if isinstance(node, ast.Not):
        return sa.not_(_cond(node.sub_node, ctx))
    if isinstance(node, bool):
        return sa.true() if node else sa.false()
    if isinstance(node, ast.Comparison):
        return _comparison(node, ctx)
    if isinstance(node, ast.Between):
        lhs = _expr(node.lhs, ctx)
        expr = lhs.between(_value(node.low, ctx, lhs), _value(node.high, ctx, lhs))
        return sa.not_(expr) if node.not_ else expr
    if isinstance(node, ast.Like):
        lhs = _expr(node.lhs, ctx)
        if not isinstance(node.pattern, str):
            raise BadRequest("LIKE needs a string pattern")
        pattern = sa.bindparam(None, node.pattern, type_=sa.Text)
        expr = lhs.ilike(pattern, escape="\\") if node.nocase else lhs.like(pattern, escape="\\")
        return sa.not_(expr) if node.not_ else expr
    if isinstance(node, ast.In):
        lhs = _expr(node.lhs, ctx)
        items = [_value(v, ctx, lhs) for v in node.sub_nodes]
        if not items:
            raise BadRequest("IN needs at least one value")
        expr = lhs.in_(items)
        return sa.not_(expr) if node.not_ else expr
    if isinstance(node, ast.IsNull):
        lhs = _expr(node.lhs, ctx)
        return lhs.is_not(None) if node.not_ else lhs.is_(None)
    if isinstance(node, ast.SpatialComparisonPredicate):
        return _spatial(node, ctx)
    if isinstance(node, ast.BBox):
        _geometry_attr(node.lhs, ctx)
        check_bbox_area(node.minx, node.miny, node.maxx, node.maxy, ctx.max_area_km2, "filter BBOX")
        env = sa.func.ST_MakeEnvelope(node.minx, node.miny, node.maxx, node.maxy, SRID)
        return sa.func.ST_Intersects(ctx.geometry, env)
    if isinstance(node, ast.DistanceWithin | ast.DistanceBeyond):
        return _distance(node, ctx)
    if isinstance(node, ast.TemporalPredicate):
        return _temporal(node, ctx)
    if isinstance(node, ast.Attribute):
        col = _attribute(node, ctx)
        return col.is_(True)
    raise BadRequest(f"unsupported CQL2 construct: {type(node).__name__}")


_OPS: dict[type, Callable[[Any, Any], ColumnElement[bool]]] = {
    ast.Equal: lambda a, b: a == b,
    ast.NotEqual: lambda a, b: a != b,
    ast.LessThan: lambda a, b: a < b,
    ast.LessEqual: lambda a, b: a <= b,
    ast.GreaterThan: lambda a, b: a > b,
    ast.GreaterEqual: lambda a, b: a >= b,
}


def _comparison(node: ast.Comparison, ctx: CqlContext) -> ColumnElement[bool]:
    op = _OPS.get(type(node))
    if op is None:
        raise BadRequest(f"unsupported comparison {type(node).__name__}")
    if _is_node(node.lhs):
        lhs = _expr(node.lhs, ctx)
        rhs = _expr(node.rhs, ctx) if _is_node(node.rhs) else _value(node.rhs, ctx, lhs)
    elif _is_node(node.rhs):
        rhs = _expr(node.rhs, ctx)
        lhs = _value(node.lhs, ctx, rhs)
    else:
        lhs, rhs = _value(node.lhs, ctx, None), _value(node.rhs, ctx, None)
    return op(lhs, rhs)


def _is_node(v: Any) -> bool:
    return isinstance(v, ast.Attribute | ast.Arithmetic | ast.Function)


# -- expressions -----------------------------------------------------------------------------
def _attribute(node: ast.Attribute, ctx: CqlContext) -> ColumnElement[Any]:
    col = ctx.column(node.name)
    if col is None:
        raise BadRequest(f"unknown property {node.name!r} in filter (see /collections/{{id}}/queryables)")
    return col


def _expr(node: Any, ctx: CqlContext) -> ColumnElement[Any]:
    if isinstance(node, ast.Attribute):
        if node.name in GEOMETRY_NAMES:
            raise BadRequest("compare geometries with S_INTERSECTS and other spatial functions")
        return _attribute(node, ctx)
    if isinstance(node, ast.Arithmetic):
        lhs = _expr(node.lhs, ctx) if _is_node(node.lhs) else _number(node.lhs)
        rhs = _expr(node.rhs, ctx) if _is_node(node.rhs) else _number(node.rhs)
        ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
               ast.Mul: lambda a, b: a * b, ast.Div: lambda a, b: a / sa.func.nullif(b, 0)}
        return ops[type(node)](lhs, rhs)
    if isinstance(node, ast.Function):
        name = node.name.lower()
        if name in ("lower", "casei", "upper") and len(node.arguments) == 1:
            arg = node.arguments[0]
            inner = _expr(arg, ctx) if _is_node(arg) else sa.bindparam(None, str(arg), type_=sa.Text)
            return sa.func.upper(inner) if name == "upper" else sa.func.lower(inner)
        raise BadRequest(f"unsupported function {node.name!r} in filter (supported: CASEI, LOWER, UPPER)")
    return _value(node, ctx, None)


def _number(v: Any) -> ColumnElement[Any]:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BadRequest(f"arithmetic needs numbers, got {v!r}")
    return sa.literal(v)


def _value(v: Any, ctx: CqlContext, like: ColumnElement[Any] | None) -> ColumnElement[Any]:
    """A literal as a bound parameter, converted to the type of the column it meets."""
    if _is_node(v):
        return _expr(v, ctx)
    if isinstance(v, ast.Function):
        return _expr(v, ctx)
    col_type = like.type if like is not None else None
    if isinstance(v, values.Geometry | values.Envelope | values.Interval):
        raise BadRequest("geometry or interval literal where a scalar was expected")
    if isinstance(col_type, sa.DateTime):
        v = _as_datetime(v)
    elif isinstance(col_type, sa.Date):
        v = _as_date(v)
    elif isinstance(col_type, sa.Float | sa.Integer | sa.BigInteger):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise BadRequest(f"value {v!r} is not a number")
    elif isinstance(col_type, sa.Boolean):
        if not isinstance(v, bool):
            raise BadRequest(f"value {v!r} is not a boolean")
    elif isinstance(col_type, sa.Text | sa.String):
        if isinstance(v, datetime | date):
            v = v.isoformat()
        elif not isinstance(v, str):
            v = str(v) if not isinstance(v, bool) else ("true" if v else "false")
    if col_type is not None and not isinstance(col_type, sa.types.NullType):
        return sa.bindparam(None, v, type_=col_type)
    return sa.literal(v)


def _as_datetime(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    if isinstance(v, date):
        return datetime.combine(v, time(), tzinfo=UTC)
    if isinstance(v, str):
        return parse_instant(v)
    raise BadRequest(f"value {v!r} is not a timestamp")


def _as_date(v: Any) -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, str):
        try:
            return date.fromisoformat(v)
        except ValueError as exc:
            raise BadRequest(f"value {v!r} is not a date (YYYY-MM-DD)") from exc
    raise BadRequest(f"value {v!r} is not a date")


def parse_instant(text: str) -> datetime:
    """RFC 3339 timestamp (``Z`` or offset; naive means UTC); a bare date means its midnight UTC."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise BadRequest(f"invalid timestamp {text!r}: expected RFC 3339, e.g. 2024-05-01T08:00:00Z") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# -- spatial ---------------------------------------------------------------------------------
def _geometry_attr(node: Any, ctx: CqlContext) -> None:
    if not (isinstance(node, ast.Attribute) and node.name in GEOMETRY_NAMES):
        raise BadRequest("spatial predicates compare the collection's geometry (call it 'geometry')")


def count_vertices(coords: Any) -> int:
    if isinstance(coords, list | tuple):
        if coords and isinstance(coords[0], int | float):
            return 1
        return sum(count_vertices(c) for c in coords)
    return 0


def geometry_literal(v: Any, max_vertices: int, max_area_km2: float | None = None) -> ColumnElement[Any]:
    if isinstance(v, values.Envelope):
        check_bbox_area(v.x1, v.y1, v.x2, v.y2, max_area_km2, "filter ENVELOPE")
        return sa.func.ST_MakeEnvelope(v.x1, v.y1, v.x2, v.y2, SRID)
    if isinstance(v, ast.Function) and v.name.lower() in ("bbox", "envelope"):
        nums = v.arguments
        if len(nums) not in (4, 6) or not all(
            isinstance(n, int | float) and not isinstance(n, bool) for n in nums
        ):
            raise BadRequest("BBOX(...) needs 4 or 6 numbers")
        if len(nums) == 6:
            nums = [nums[0], nums[1], nums[3], nums[4]]
        w, s, e, n = nums
        check_bbox_area(w, s, e, n, max_area_km2, "filter BBOX")
        return sa.func.ST_MakeEnvelope(w, s, e, n, SRID)
    if not isinstance(v, values.Geometry):
        raise BadRequest("spatial predicates need a geometry literal (WKT) or BBOX")
    geom = v.geometry
    n = count_vertices(geom.get("coordinates", [])) + sum(
        count_vertices(g.get("coordinates", [])) for g in geom.get("geometries", [])
    )
    if n > max_vertices:
        raise BadRequest(f"geometry too complex: {n} vertices, at most {max_vertices}")
    geojson = sa.bindparam(None, json.dumps(geom), type_=sa.Text)
    return sa.func.ST_SetSRID(sa.func.ST_GeomFromGeoJSON(geojson), SRID)


_SPATIAL = {
    ast.GeometryIntersects: "ST_Intersects", ast.GeometryDisjoint: "ST_Disjoint",
    ast.GeometryContains: "ST_Contains", ast.GeometryWithin: "ST_Within",
    ast.GeometryTouches: "ST_Touches", ast.GeometryCrosses: "ST_Crosses",
    ast.GeometryOverlaps: "ST_Overlaps", ast.GeometryEquals: "ST_Equals",
}


def _spatial(node: ast.SpatialComparisonPredicate, ctx: CqlContext) -> ColumnElement[bool]:
    fn = _SPATIAL.get(type(node))
    if fn is None:
        raise BadRequest(f"unsupported spatial predicate {type(node).__name__}")
    if isinstance(node.lhs, ast.Attribute):
        _geometry_attr(node.lhs, ctx)
        a, b = ctx.geometry, geometry_literal(node.rhs, ctx.max_vertices, ctx.max_area_km2)
    else:
        _geometry_attr(node.rhs, ctx)
        a, b = geometry_literal(node.lhs, ctx.max_vertices, ctx.max_area_km2), ctx.geometry
    return getattr(sa.func, fn)(a, b)


_UNITS_M = {"meters": 1.0, "metres": 1.0, "m": 1.0, "kilometers": 1000.0, "km": 1000.0,
            "feet": 0.3048, "statute miles": 1609.344, "nautical miles": 1852.0}


def _distance(node: ast.DistanceWithin | ast.DistanceBeyond, ctx: CqlContext) -> ColumnElement[bool]:
    _geometry_attr(node.lhs, ctx)
    factor = _UNITS_M.get((node.units or "meters").lower())
    if factor is None:
        raise BadRequest(f"unsupported distance unit {node.units!r}")
    other = geometry_literal(node.rhs, ctx.max_vertices, ctx.max_area_km2)
    within = sa.func.ST_DWithin(sa.cast(ctx.geometry, _Geography()), sa.cast(other, _Geography()),
                                float(node.distance) * factor)
    return within if isinstance(node, ast.DistanceWithin) else sa.not_(within)


class _Geography(sa.types.UserDefinedType[Any]):
    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "geography"


# -- temporal --------------------------------------------------------------------------------
def _interval(v: Any) -> tuple[datetime | None, datetime | None]:
    """(start, end) of a literal: an instant is [t, t], a date the whole day, intervals as given."""
    if isinstance(v, values.Interval):
        start = _bound(v.start)
        end = _bound(v.end)
        if isinstance(v.end, timedelta) and start is not None:
            end = start + v.end
        if isinstance(v.start, timedelta) and end is not None:
            start = end - v.start
        return start, end
    if isinstance(v, datetime):
        t = _as_datetime(v)
        return t, t
    if isinstance(v, date):
        t = _as_datetime(v)
        return t, t + timedelta(days=1) - timedelta(microseconds=1)
    if isinstance(v, str):
        t = parse_instant(v)
        return t, t
    raise BadRequest(f"not a time literal: {v!r}")


def _bound(v: Any) -> datetime | None:
    if v is None or isinstance(v, timedelta) or v == "..":
        return None
    return _as_datetime(v)


def _temporal(node: ast.TemporalPredicate, ctx: CqlContext) -> ColumnElement[bool]:
    if not isinstance(node.lhs, ast.Attribute):
        raise BadRequest("temporal predicates need a property as first argument")
    col = _attribute(node.lhs, ctx)
    if not isinstance(col.type, sa.DateTime | sa.Date):
        raise BadRequest(f"property {node.lhs.name!r} is not a timestamp")
    start, end = _interval(node.rhs)
    lo = sa.bindparam(None, start, type_=sa.DateTime(timezone=True)) if start else None
    hi = sa.bindparam(None, end, type_=sa.DateTime(timezone=True)) if end else None
    op = node.op.name

    def cmp(c: Any) -> ColumnElement[bool]:
        return c if c is not None else sa.true()

    if op == "BEFORE":
        return cmp(col < lo) if lo is not None else sa.false()
    if op == "AFTER":
        return cmp(col > hi) if hi is not None else sa.false()
    if op in ("TEQUALS",):
        return sa.and_(col == lo if lo is not None else sa.true(), col == hi if hi is not None else sa.true())
    if op in ("INTERSECTS", "DURING", "TOVERLAPS", "BEFORE_OR_DURING", "DURING_OR_AFTER", "TCONTAINS",
              "BEGINS", "ENDS", "MEETS", "METBY", "BEGUNBY", "ENDEDBY", "OVERLAPPEDBY"):
        parts = []
        if op == "BEFORE_OR_DURING":
            return col <= hi if hi is not None else sa.true()
        if op == "DURING_OR_AFTER":
            return col >= lo if lo is not None else sa.true()
        if lo is not None:
            parts.append(col >= lo)
        if hi is not None:
            parts.append(col <= hi)
        if op == "DURING":  # open interval
            parts = ([col > lo] if lo is not None else []) + ([col < hi] if hi is not None else [])
        return sa.and_(*parts) if parts else sa.true()
    if op == "DISJOINT":
        parts = ([col < lo] if lo is not None else []) + ([col > hi] if hi is not None else [])
        return sa.or_(*parts) if parts else sa.false()
    raise BadRequest(f"unsupported temporal predicate T_{op}")
