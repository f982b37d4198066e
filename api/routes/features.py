"""OGC API – Features Part 1 (Core, GeoJSON, OpenAPI 3.0) + Part 3 CQL2-text filters, queryables.

The landing page itself is ``GET /`` (served by :mod:`api.routes.viewer`, which hands JSON
requests to :func:`landing`).
"""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Query, Request
from sqlalchemy import Connection
from starlette.responses import Response

from api.auth import User, write_audit
from api.collections import COLLECTIONS, Collection, may_read
from api.deps import AppState, CurrentUser, DbConn, State, client_addr
from api.edge import public_base
from api.errors import BadRequest, Forbidden, NotFound, Unauthorized
from api.featuresql import (
    CRS84,
    ExtentCache,
    ItemQuery,
    Source,
    parse_bbox,
    parse_datetime,
    parse_sortby,
    query_items,
)

router = APIRouter(tags=["features"])

GEOJSON = "application/geo+json"
CONTENT_CRS = {"Content-Crs": f"<{CRS84}>"}
OPENAPI_MT = "application/vnd.oai.openapi+json;version=3.0"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/arithmetic",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/sorting",
]
#: query parameters of /items besides property names
ITEM_PARAMS = frozenset({"f", "limit", "offset", "bbox", "bbox-crs", "datetime", "properties", "sortby",
                         "filter", "filter-lang", "filter-crs", "crs"})
#: spellings of the one response CRS offered (GDAL's OAPIF driver asks for it by URI)
CRS84_NAMES = frozenset({CRS84, "OGC:CRS84", "CRS84"})


def _json(body: Any, media_type: str = "application/json", status: int = 200) -> Response:
    return Response(orjson.dumps(body, default=str), status_code=status, media_type=media_type)


def _base(request: Request) -> str:
    """ONEMAP_PUBLIC_URL, or the request's (trusted, see api.edge.InputGuard) Host: never an unchecked one."""
    return public_base(request)


def _check_crs(crs: str | None) -> None:
    """OGC API – Features Part 2 ``crs``: only CRS84 (lon/lat on CGCS2000 ≈ WGS 84) is offered."""
    if crs not in (None, "") and crs not in CRS84_NAMES:
        raise BadRequest(f"unsupported crs {crs!r}; this server offers only {CRS84}")


def _check_f(f: str | None) -> None:
    if f not in (None, "", "json", "geojson"):
        raise BadRequest(f"unsupported format f={f!r}; this endpoint speaks json")


F = Annotated[str | None, Query(description="Output format: json")]


def landing(request: Request) -> Response:
    b = _base(request)
    return _json({
        "title": "onemap — Jiefang Street, Bengbu",
        "description": "3D one-map server: OGC API – Features for the operational layers, 3D Tiles, "
                       "analytics and a live stream.",
        "links": [
            {"href": f"{b}/?f=json", "rel": "self", "type": "application/json", "title": "This document"},
            {"href": f"{b}/api", "rel": "service-desc", "type": OPENAPI_MT, "title": "OpenAPI definition"},
            {"href": f"{b}/docs", "rel": "service-doc", "type": "text/html", "title": "API documentation"},
            {"href": f"{b}/conformance", "rel": "conformance", "type": "application/json",
             "title": "Conformance classes"},
            {"href": f"{b}/collections", "rel": "data", "type": "application/json", "title": "Collections"},
            {"href": f"{b}/tilesets", "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
             "type": "application/json", "title": "3D Tiles catalog"},
            {"href": f"{b}/?mode=viewer", "rel": "alternate", "type": "text/html", "title": "3D viewer"},
        ],
    })


@router.get("/conformance", summary="Conformance classes")
def conformance(f: F = None) -> Response:
    _check_f(f)
    return _json({"conformsTo": CONFORMANCE})


def _collection(state: AppState, name: str, user: User | None) -> Collection:
    coll = COLLECTIONS.get(name)
    if coll is None:
        raise NotFound(f"no collection {name!r}; see /collections")
    if not may_read(coll, user.role if user else None, state.settings.api.anonymous_collections):
        if user is None:
            raise Unauthorized(f"collection {name!r} needs authentication")
        raise Forbidden(f"role {user.role!r} may not read collection {name!r}")
    return coll


def _extents(state: AppState) -> ExtentCache:
    cache = state.caches.get("extent")
    if cache is None:
        cache = state.caches["extent"] = ExtentCache(state.settings.api.extent_cache_s)
    return cache


def _collection_doc(request: Request, conn: Connection, state: AppState, coll: Collection) -> dict[str, Any]:
    b = _base(request)
    u = f"{b}/collections/{coll.id}"
    return {
        "id": coll.id,
        "title": coll.title,
        "description": coll.description,
        "itemType": "feature",
        "crs": [CRS84],
        "storageCrs": CRS84,
        "extent": _extents(state).get(conn, coll),
        "links": [
            {"href": u, "rel": "self", "type": "application/json", "title": coll.title},
            {"href": f"{u}/items", "rel": "items", "type": GEOJSON, "title": f"{coll.title} (GeoJSON)"},
            {"href": f"{u}/queryables", "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
             "type": "application/schema+json", "title": "Queryables"},
        ],
    }


@router.get("/collections", summary="The feature collections this user may read")
def collections(request: Request, state: State, conn: DbConn, user: CurrentUser, f: F = None) -> Response:
    _check_f(f)
    role = user.role if user else None
    readable = [c for c in COLLECTIONS.values() if may_read(c, role, state.settings.api.anonymous_collections)]
    b = _base(request)
    return _json({
        "links": [{"href": f"{b}/collections", "rel": "self", "type": "application/json"}],
        "collections": [_collection_doc(request, conn, state, c) for c in readable],
    })


@router.get("/collections/{collection_id}", summary="One collection")
def collection(request: Request, collection_id: str, state: State, conn: DbConn, user: CurrentUser,
               f: F = None) -> Response:
    _check_f(f)
    coll = _collection(state, collection_id, user)
    return _json(_collection_doc(request, conn, state, coll))


_JSON_SCHEMA_TYPES = {
    "string": {"type": "string"}, "integer": {"type": "integer"}, "number": {"type": "number"},
    "boolean": {"type": "boolean"}, "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"}, "array": {"type": "array", "items": {"type": "string"}},
}


@router.get("/collections/{collection_id}/queryables", summary="Properties usable in filters and sortby")
def queryables(request: Request, collection_id: str, state: State, user: CurrentUser,
               f: F = None) -> Response:
    _check_f(f)
    coll = _collection(state, collection_id, user)
    props: dict[str, Any] = {
        "id": {"title": "feature id", "type": "integer" if coll.id_type == "integer" else "string"},
        "geometry": {"$ref": f"https://geojson.org/schema/{coll.geometry_type}.json"
                     if coll.geometry_type != "Geometry" else "https://geojson.org/schema/Geometry.json"},
    }
    for p in coll.visible_properties(user.role if user else None):
        props[p.name] = {"title": p.description or p.name, **_JSON_SCHEMA_TYPES[p.type]}
    return _json({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{_base(request)}/collections/{coll.id}/queryables",
        "type": "object", "title": coll.title, "properties": props, "additionalProperties": False,
    }, media_type="application/schema+json")


def _source(coll: Collection, user: User | None) -> Source:
    privileged = bool(user and user.privileged and coll.privileged_table)
    return Source(coll, privileged, user.role if user else None)


def _audit(state: AppState, request: Request, user: User | None, src: Source,
           details: dict[str, Any]) -> None:
    if not src.privileged:
        return
    with state.engine.begin() as conn:
        write_audit(conn, user, "population.read_unsuppressed", src.coll.id,
                    {"path": request.url.path, "query": str(request.url.query), **details},
                    client_addr(request))


@router.get("/collections/{collection_id}/items", summary="Features (GeoJSON), paged",
            response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
def items(
    request: Request,
    collection_id: str,
    state: State,
    conn: DbConn,
    user: CurrentUser,
    limit: Annotated[int | None, Query(ge=1, description="Page size (capped by the server).")] = None,
    offset: Annotated[int, Query(ge=0, le=100_000_000, description="Items to skip.")] = 0,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat (CRS84).")] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs")] = None,
    datetime: Annotated[str | None, Query(description="Instant or interval (a/b, ../b, a/..).")] = None,
    properties: Annotated[str | None, Query(description="Comma-separated properties to return.")] = None,
    sortby: Annotated[str | None, Query(description="+prop,-prop")] = None,
    filter: Annotated[str | None, Query(description="CQL2-text filter.")] = None,
    filter_lang: Annotated[str | None, Query(alias="filter-lang")] = None,
    filter_crs: Annotated[str | None, Query(alias="filter-crs")] = None,
    crs: Annotated[str | None, Query(description=f"Response CRS; only {CRS84}.")] = None,
    f: F = None,
) -> Response:
    _check_f(f)
    _check_crs(crs)
    coll = _collection(state, collection_id, user)
    s = state.settings
    if filter_lang not in (None, "cql2-text"):
        raise BadRequest(f"unsupported filter-lang {filter_lang!r}; supported: cql2-text")
    if filter_crs not in (None, CRS84):
        raise BadRequest(f"unsupported filter-crs {filter_crs!r}; only {CRS84}")
    equals = {k: v for k, v in request.query_params.items() if k not in ITEM_PARAMS}
    visible = {p.name for p in coll.visible_properties(user.role if user else None)} | {"id"}
    unknown = [k for k in equals if k not in visible]
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(ITEM_PARAMS | visible))}")
    if "id" in equals:
        equals[coll.id_column] = equals.pop("id")
    page = min(limit or s.api.default_page_size, s.api.max_page_size)
    q = ItemQuery(
        limit=page, offset=offset,
        bbox=parse_bbox(bbox, bbox_crs, s.api.max_bbox_area_km2) if bbox else None,
        datetime=parse_datetime(datetime) if datetime else None,
        properties=[p.strip() for p in properties.split(",")] if properties is not None else None,
        sortby=parse_sortby(sortby) if sortby else None,
        filter=filter, equals=equals, max_bbox_area_km2=s.api.max_bbox_area_km2,
    )
    src = _source(coll, user)
    rows, matched = query_items(conn, src, q, s.api.max_geometry_vertices)
    _audit(state, request, user, src, {"returned": len(rows)})
    links = _page_links(request, coll, offset, page, len(rows), matched)
    head = orjson.dumps({
        "type": "FeatureCollection",
        "numberMatched": matched,
        "numberReturned": len(rows),
        "timeStamp": _now_iso(),
        "links": links,
    })
    body = head[:-1] + b',"features":[' + ",".join(rows).encode() + b"]}"
    return Response(body, media_type=GEOJSON, headers=CONTENT_CRS)


def _now_iso() -> str:
    from datetime import datetime

    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _page_links(request: Request, coll: Collection, offset: int, limit: int, returned: int,
                matched: int | None) -> list[dict[str, Any]]:
    base = f"{_base(request)}/collections/{coll.id}/items"
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "limit")]

    def url(off: int) -> str:
        return base + "?" + urlencode([*params, ("limit", str(limit)), ("offset", str(off))])

    links = [
        {"href": url(offset), "rel": "self", "type": GEOJSON, "title": "this page"},
        {"href": f"{_base(request)}/collections/{coll.id}", "rel": "collection", "type": "application/json"},
    ]
    more = offset + returned < matched if matched is not None else returned == limit
    if more and returned > 0:
        links.append({"href": url(offset + returned), "rel": "next", "type": GEOJSON, "title": "next page"})
    if offset > 0:
        links.append({"href": url(max(offset - limit, 0)), "rel": "prev", "type": GEOJSON,
                      "title": "previous page"})
    return links


@router.get("/collections/{collection_id}/items/{feature_id}", summary="One feature (GeoJSON)",
            response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
def item(request: Request, collection_id: str, feature_id: str, state: State, conn: DbConn,
         user: CurrentUser, properties: Annotated[str | None, Query()] = None,
         crs: Annotated[str | None, Query(description=f"Response CRS; only {CRS84}.")] = None,
         f: F = None) -> Response:
    _check_f(f)
    _check_crs(crs)
    coll = _collection(state, collection_id, user)
    fid: Any = feature_id
    if coll.id_type == "integer":
        try:
            fid = int(feature_id)
        except ValueError:
            raise NotFound(f"no feature {feature_id!r} in {coll.id}") from None
        if not -(2**63) <= fid < 2**63:
            raise NotFound(f"no feature {feature_id!r} in {coll.id}")
    q = ItemQuery(limit=1, fid=fid,
                  properties=[p.strip() for p in properties.split(",")] if properties is not None else None)
    src = _source(coll, user)
    rows, _ = query_items(conn, src, q, state.settings.api.max_geometry_vertices, count=False)
    if not rows:
        raise NotFound(f"no feature {feature_id!r} in {coll.id}")
    _audit(state, request, user, src, {"feature": feature_id})
    b = _base(request)
    links = orjson.dumps([
        {"href": f"{b}/collections/{coll.id}/items/{feature_id}", "rel": "self", "type": GEOJSON},
        {"href": f"{b}/collections/{coll.id}", "rel": "collection", "type": "application/json"},
    ])
    body = rows[0].encode()
    body = body[:-1] + b',"links":' + links + b"}"
    return Response(body, media_type=GEOJSON, headers=CONTENT_CRS)

