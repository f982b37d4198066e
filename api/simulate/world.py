"""The district as the simulator sees it, read through the public API with an operator token:
workers with their device ids and last positions (``/analytics/patrollers/nearest``), their
patrol areas (``/collections/geofences``), their patrol routes (the latest shift track of
``/collections/patrol_tracks``), the district extent and the event categories.

Coordinates are lon/lat (CGCS2000 ≈ WGS 84 at this scale); local distances use an
equirectangular approximation around the district centre (error well under 1 % over 5 km).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field

from api.simulate.client import ApiClient

log = logging.getLogger(__name__)

LonLat = tuple[float, float]
#: Jiefang Street, Bengbu: used when the API gives no extent
DEFAULT_CENTER: LonLat = (117.39, 32.93)
M_PER_DEG_LAT = 110_540.0
CATEGORIES = ("city_appearance", "street_order", "sanitation", "municipal_facilities",
              "greening", "illegal_construction", "safety_hazard", "dispute")


def m_per_deg_lon(lat: float) -> float:
    return 111_320.0 * math.cos(math.radians(lat))


def distance_m(a: LonLat, b: LonLat) -> float:
    lat = (a[1] + b[1]) / 2
    return math.hypot((b[0] - a[0]) * m_per_deg_lon(lat), (b[1] - a[1]) * M_PER_DEG_LAT)


def offset(p: LonLat, east_m: float, north_m: float) -> LonLat:
    return (p[0] + east_m / m_per_deg_lon(p[1]), p[1] + north_m / M_PER_DEG_LAT)


def point_in_ring(p: LonLat, ring: list[LonLat]) -> bool:
    inside = False
    x, y = p
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def densify(line: list[LonLat], step_m: float = 5.0) -> list[LonLat]:
    """Points at most ``step_m`` apart along ``line`` (the walk samples positions from them)."""
    out: list[LonLat] = []
    for a, b in zip(line, line[1:], strict=False):
        n = max(1, int(distance_m(a, b) // step_m))
        out.extend((a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n) for k in range(n))
    if line:
        out.append(line[-1])
    return out


@dataclass
class Worker:
    worker_id: str
    name: str
    kind: str  # grid_worker | vehicle
    device_id: str
    position: LonLat
    grid_id: str | None = None
    #: the patrol area's outer ring (None: no patrol area)
    area: list[LonLat] | None = None
    #: a closed walk (lon/lat, ≤ 5 m apart) the device follows on patrol
    route: list[LonLat] = field(default_factory=list)


@dataclass
class World:
    center: LonLat
    bbox: tuple[float, float, float, float]
    workers: list[Worker]
    categories: tuple[str, ...] = CATEGORIES

    def random_point(self, rnd: random.Random) -> LonLat:
        """A point on some worker's route (streets), else anywhere in the extent."""
        routes = [w.route for w in self.workers if w.route]
        if routes:
            route = rnd.choice(routes)
            p = rnd.choice(route)
            return offset(p, rnd.uniform(-15, 15), rnd.uniform(-15, 15))
        w, s, e, n = self.bbox
        return (rnd.uniform(w, e), rnd.uniform(s, n))


def _extent(client: ApiClient, token: str) -> tuple[float, float, float, float] | None:
    meta = client.json("GET", "/collections/geofences", "GET /collections/{id}", token, params={"f": "json"})
    try:
        w, s, e, n = meta["extent"]["spatial"]["bbox"][0][:4]
        return float(w), float(s), float(e), float(n)
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def _outer_ring(geometry: dict | None) -> list[LonLat] | None:
    if not geometry:
        return None
    if geometry["type"] == "Polygon":
        ring = geometry["coordinates"][0]
    elif geometry["type"] == "MultiPolygon":
        ring = max((p[0] for p in geometry["coordinates"]), key=len)
    else:
        return None
    return [(float(x), float(y)) for x, y, *_ in ring]


def _longest_line(geometry: dict | None) -> list[LonLat]:
    if not geometry:
        return []
    lines = geometry["coordinates"] if geometry["type"] == "MultiLineString" else [geometry["coordinates"]]
    best = max(lines, key=len, default=[])
    return [(float(x), float(y)) for x, y, *_ in best]


def _shrunk_ring(ring: list[LonLat], factor: float = 0.8) -> list[LonLat]:
    cx = sum(p[0] for p in ring) / len(ring)
    cy = sum(p[1] for p in ring) / len(ring)
    return [(cx + (x - cx) * factor, cy + (y - cy) * factor) for x, y in ring]


def _route_for(client: ApiClient, token: str, worker: Worker) -> list[LonLat]:
    fc = client.json("GET", "/collections/patrol_tracks/items", "GET /collections/{id}/items", token,
                     params={"worker_id": worker.worker_id, "sortby": "-shift_start", "limit": 1})
    line = _longest_line(fc["features"][0]["geometry"]) if fc and fc.get("features") else []
    if len(line) >= 2:
        # ride it there and back: a closed walk without a jump from its end to its start
        return densify(line + line[::-1][1:])
    if worker.area:
        ring = _shrunk_ring(worker.area)
        return densify(ring + ring[:1])
    p = worker.position
    square = [offset(p, dx, dy) for dx, dy in ((-50, -50), (50, -50), (50, 50), (-50, 50), (-50, -50))]
    return densify(square)


def discover(client: ApiClient, token: str, max_workers: int | None = None, routes: bool = True) -> World:
    """Read the district through the API (``token``: an operator's or an admin's)."""
    bbox = _extent(client, token)
    center = ((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2) if bbox else DEFAULT_CENTER
    if bbox is None:
        bbox = (center[0] - 0.02, center[1] - 0.015, center[0] + 0.02, center[1] + 0.015)
    rows = client.json("GET", "/analytics/patrollers/nearest", "GET /analytics/patrollers/nearest", token,
                       params={"lon": center[0], "lat": center[1], "n": 1000, "by": "straight"}) or []
    areas: dict[str, list[LonLat]] = {}
    fc = client.json("GET", "/collections/geofences/items", "GET /collections/{id}/items", token,
                     params={"kind": "patrol_area", "limit": 1000}) or {"features": []}
    for f in fc["features"]:
        ring = _outer_ring(f.get("geometry"))
        wid = (f.get("properties") or {}).get("worker_id")
        if wid and ring:
            areas[wid] = ring
    workers = [Worker(worker_id=r["worker_id"], name=r.get("name") or r["worker_id"],
                      kind=r.get("kind") or "grid_worker", device_id=r["device_id"],
                      position=(float(r["lon"]), float(r["lat"])), grid_id=r.get("grid_id"),
                      area=areas.get(r["worker_id"]))
               for r in rows if r.get("device_id")]
    workers.sort(key=lambda w: w.worker_id)
    if max_workers is not None:
        workers = workers[:max_workers]
    if routes:
        for w in workers:
            w.route = _route_for(client, token, w)
    log.info("district: %d workers with devices, %d patrol areas", len(workers), len(areas))
    return World(center=center, bbox=bbox, workers=workers)
