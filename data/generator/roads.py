"""Street network: an irregular rotated grid of primary/secondary/tertiary streets, lanes and
service roads; bridges where streets cross the river; a noded graph for routing."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from .common import CRS_4548, District, centre_xy_4548
from .names import EW_STREETS, LANE_WORDS, NS_STREETS, TERTIARY_STREETS, unique_picks

# carriageway width (m), traffic lanes, sidewalk width each side (m)
CLASS_SPEC = {
    "primary": (24.0, 6, 5.0),
    "secondary": (15.0, 4, 4.0),
    "tertiary": (10.0, 2, 3.0),
    "residential": (6.0, 2, 1.5),
    "service": (4.0, 1, 0.5),
}
MAJOR = ("primary", "secondary")
LAKE_ROAD_OFFSET_M = 40.0


@dataclass
class Graph:
    """Noded road network: segment i joins nodes u[i] -> v[i]."""

    nodes: np.ndarray  # (n, 2) xy_4548
    u: np.ndarray
    v: np.ndarray
    length: np.ndarray
    segments: np.ndarray  # shapely LineStrings, oriented u -> v
    road_index: np.ndarray  # index into the roads frame
    degree: np.ndarray


class Frame:
    """Rotated local frame of the street grid."""

    def __init__(self, angle_rad: float):
        self.cx, self.cy = centre_xy_4548()
        self.c, self.s = np.cos(angle_rad), np.sin(angle_rad)

    def to_world(self, u, v):
        return self.cx + u * self.c - v * self.s, self.cy + u * self.s + v * self.c

    def to_local(self, x, y):
        dx, dy = np.asarray(x) - self.cx, np.asarray(y) - self.cy
        return dx * self.c + dy * self.s, -dx * self.s + dy * self.c


def _wavy_line(
    frame: Frame, rng, fixed: float, t0: float, t1: float, along_v: bool, amp: float
) -> LineString:
    t = np.arange(t0, t1 + 1e-9, 20.0)
    lam = rng.uniform(1400, 3200)
    off = fixed + amp * np.sin(2 * np.pi * t / lam + rng.uniform(0, 2 * np.pi))
    u, v = (off, t) if along_v else (t, off)
    x, y = frame.to_world(u, v)
    return LineString(np.column_stack([x, y]))


def _positions(rng, lo: float, hi: float, step_lo: float, step_hi: float) -> list[float]:
    out, p = [], lo + rng.uniform(0.4, 0.7) * step_lo
    while p < hi - 0.3 * step_lo:
        out.append(p)
        p += rng.uniform(step_lo, step_hi)
    return out


def _explode_lines(g) -> list[LineString]:
    if g.is_empty:
        return []
    if g.geom_type == "LineString":
        return [g]
    out = []
    for p in getattr(g, "geoms", []):
        out.extend(_explode_lines(p))
    return out


def _major_and_tertiary(rng, d: District, frame: Frame):
    """Returns list of (line, class, name)."""
    bx, by = np.asarray(d.boundary.exterior.coords).T
    u, v = frame.to_local(bx, by)
    u0, u1, v0, v1 = u.min(), u.max(), v.min(), v.max()
    lines = []
    ns_names = unique_picks(rng, NS_STREETS, 20)
    ew_names = unique_picks(rng, EW_STREETS, 20)
    ter_names = unique_picks(rng, TERTIARY_STREETS, 60)
    ti = 0
    for along_v, (a0, a1, t0, t1), names in (
        (True, (u0, u1, v0 - 100, v1 + 100), ns_names),
        (False, (v0, v1, u0 - 100, u1 + 100), ew_names),
    ):
        pos = _positions(rng, a0, a1, 380, 520)
        classes = ["primary" if (i % 3 == 1) else "secondary" for i in range(len(pos))]
        for i, p in enumerate(pos):
            lines.append(
                (_wavy_line(frame, rng, p, t0, t1, along_v, rng.uniform(5, 40)), classes[i], names[i])
            )
        # tertiary streets between majors, some only over part of the length
        for a, b in zip([a0, *pos], [*pos, a1], strict=True):
            if b - a < 260 or rng.random() > 0.9:
                continue
            mid = (a + b) / 2 + rng.uniform(-30, 30)
            if rng.random() < 0.6:
                s0, s1 = t0, t1
            else:
                s0 = rng.uniform(t0, (t0 + t1) / 2)
                s1 = rng.uniform(s0 + 600, t1 + 600)
            lines.append(
                (
                    _wavy_line(frame, rng, mid, s0, min(s1, t1), along_v, rng.uniform(0, 20)),
                    "tertiary",
                    ter_names[ti],
                )
            )
            ti += 1
    return lines


def _split_bridges(line: LineString, river_zone) -> list[tuple[LineString, int]]:
    if not line.intersects(river_zone):
        return [(line, 0)]
    out = [(g, 0) for g in _explode_lines(line.difference(river_zone))]
    out += [(g, 1) for g in _explode_lines(line.intersection(river_zone))]
    return out


def _lanes_and_service(rng, d: District, superblocks: list[Polygon], road_land):
    lanes, service = [], []
    lane_names = unique_picks(rng, LANE_WORDS, len(LANE_WORDS))
    li = 0
    no_lane_zone = d.river.buffer(9.0).union(d.lake.buffer(LAKE_ROAD_OFFSET_M - 1))
    for poly in superblocks:
        mrr = poly.minimum_rotated_rectangle
        c = np.asarray(mrr.exterior.coords)[:4]
        e1, e2 = c[1] - c[0], c[2] - c[1]
        long_e, short_e = (e1, e2) if np.hypot(*e1) >= np.hypot(*e2) else (e2, e1)
        long_len, short_len = np.hypot(*long_e), np.hypot(*short_e)
        ul, us = long_e / long_len, short_e / short_len
        centre = np.asarray(mrr.centroid.coords[0])
        n = int(long_len // 105)
        if n >= 1 and rng.random() < 0.2:
            n -= 1
        offsets = (np.arange(n) + 1) / (n + 1) - 0.5
        cand = []
        for o in offsets:
            p = centre + ul * (o * long_len + rng.uniform(-10, 10))
            cand.append(LineString([p - us * (short_len + 50), p + us * (short_len + 50)]))
        if short_len > 170 and rng.random() < 0.6:
            p = centre + us * rng.uniform(-0.15, 0.15) * short_len
            cand.append(LineString([p - ul * (long_len + 50), p + ul * (long_len + 50)]))
        for ln in cand:
            for g in _explode_lines(ln.intersection(poly).difference(no_lane_zone)):
                if g.length < 40:
                    continue
                if rng.random() < 0.25:  # dead-end lane from one side
                    g = (
                        shapely.ops.substring(g, 0, g.length * rng.uniform(0.45, 0.7))
                        if rng.random() < 0.5
                        else shapely.ops.substring(g, g.length * rng.uniform(0.3, 0.55), g.length)
                    )
                word = lane_names[li % len(lane_names)]
                li += 1
                lanes.append((g, "residential", f"{word}{'巷' if li % 3 else '里'}"))
        # service roads: short driveways from the block edge into the compounds
        ring = poly.exterior
        for _ in range(int(rng.integers(1, 4))):
            s = rng.uniform(0.1, 0.9) * ring.length
            p0 = np.asarray(ring.interpolate(s).coords[0])
            p1 = np.asarray(ring.interpolate(s + 1.0).coords[0])
            t = (p1 - p0) / max(np.hypot(*(p1 - p0)), 1e-9)
            nrm = np.array([-t[1], t[0]])
            if not poly.contains(shapely.Point(p0 + nrm * 5)):
                nrm = -nrm
            seg = LineString([p0, p0 + nrm * rng.uniform(35, 65)])
            for g in _explode_lines(seg.intersection(poly).difference(no_lane_zone)):
                if g.length > 25:
                    service.append((g, "service", None))
    return lanes, service


def build(rng: np.random.Generator, d: District) -> None:
    frame = Frame(np.deg2rad(rng.uniform(-14, 14)))
    d.extras["grid_angle"] = float(np.arctan2(frame.s, frame.c))
    lake_zone = d.lake.buffer(LAKE_ROAD_OFFSET_M)
    road_land = d.boundary.difference(lake_zone)
    river_zone = d.river.buffer(6.0)
    raw = _major_and_tertiary(rng, d, frame)
    # lakeside road along the shore
    shore = lake_zone.exterior.intersection(d.boundary)
    for g in _explode_lines(shapely.line_merge(shore) if shore.geom_type != "LineString" else shore):
        if g.length > 80:
            raw.append((g, "secondary", "湖滨路"))
    pieces = []
    for line, cls, name in raw:
        for g in _explode_lines(line.intersection(road_land)):
            if g.length < 30:
                continue
            for h, br in _split_bridges(g, river_zone):
                if h.length >= 5:
                    pieces.append((h, cls, name, br))
    # superblocks between the main streets
    cut = [p[0] for p in pieces] + [d.boundary.exterior, d.river.exterior, lake_zone.exterior]
    noded = shapely.union_all(cut)
    polys = list(shapely.polygonize(list(_explode_lines(noded))).geoms)
    land = d.boundary.difference(lake_zone).difference(d.river)
    superblocks = [p for p in polys if p.area > 2000 and land.contains(p.representative_point())]
    lanes, service = _lanes_and_service(rng, d, superblocks, road_land)
    for g, cls, name in lanes + service:
        pieces.append((g, cls, name, 0))

    order = {"primary": 0, "secondary": 1, "tertiary": 2, "residential": 3, "service": 4}
    pieces.sort(key=lambda p: (order[p[1]], round(p[0].centroid.y, 1), round(p[0].centroid.x, 1)))
    geoms = [shapely.set_precision(p[0], 0.01) for p in pieces]
    cls = [p[1] for p in pieces]
    width = np.array([CLASS_SPEC[c][0] for c in cls])
    bridge = np.array([p[3] for p in pieces], dtype=np.int64)
    deck = np.where(bridge == 1, np.round(rng.uniform(5.5, 8.5, len(pieces)), 1), np.nan)
    roads = gpd.GeoDataFrame(
        {
            "id": [f"R{i + 1:04d}" for i in range(len(pieces))],
            "name": [p[2] for p in pieces],
            "class": cls,
            "width": width,
            "lanes": np.array([CLASS_SPEC[c][1] for c in cls], dtype=np.int64),
            "bridge": bridge,
            "deck_height": deck,
        },
        geometry=geoms,
        crs=CRS_4548,
    )
    roads["_sidewalk"] = [CLASS_SPEC[c][2] for c in cls]
    d.roads = roads
    d.extras["superblocks"] = superblocks
    d.graph = build_graph(roads)


def carriageways(roads: gpd.GeoDataFrame, extra: float = 0.0) -> np.ndarray:
    """Carriageway polygons (flat caps), optionally widened by `extra` m each side."""
    return shapely.buffer(roads.geometry.values, roads["width"].to_numpy() / 2 + extra, cap_style="flat")


def road_corridors(roads: gpd.GeoDataFrame, extra: float = 0.0) -> np.ndarray:
    """Carriageway + sidewalks (+ extra) with round caps: what buildings keep clear of."""
    return shapely.buffer(
        roads.geometry.values, roads["width"].to_numpy() / 2 + roads["_sidewalk"].to_numpy() + extra
    )


def build_graph(roads: gpd.GeoDataFrame) -> Graph:
    noded = shapely.node(shapely.multilinestrings(list(roads.geometry.values)))
    segs = np.asarray(shapely.get_parts(noded))
    segs = segs[shapely.length(segs) > 0.05]
    starts = shapely.get_coordinates(shapely.get_point(segs, 0))
    ends = shapely.get_coordinates(shapely.get_point(segs, -1))
    keys = np.round(np.vstack([starts, ends]) * 10).astype(np.int64)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    nodes = uniq / 10.0
    u, v = inv[: len(segs)], inv[len(segs) :]
    keep = u != v
    segs, u, v = segs[keep], u[keep], v[keep]
    mids = shapely.line_interpolate_point(segs, 0.5, normalized=True)
    tree = shapely.STRtree(roads.geometry.values)
    road_index = tree.query_nearest(mids, all_matches=False)[1]
    degree = np.bincount(np.concatenate([u, v]), minlength=len(nodes))
    return Graph(nodes, u, v, shapely.length(segs), segs, road_index, degree)
