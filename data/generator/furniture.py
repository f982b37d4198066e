"""Street furniture: lamps, signals, signs, bus shelters, benches, bins, toilets, kiosks,
billboards, hydrants, fitness equipment and exactly three named sculptures.

Headings are degrees clockwise from grid north. Nothing stands in a building or a carriageway.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from .common import CRS_4548, District
from .roads import MAJOR, carriageways

SCULPTURES = [("解放纪念碑", 9.5), ("龙子腾飞", 6.8), ("淮河之光", 4.2)]


def _azimuth(dx, dy):
    return np.mod(np.degrees(np.arctan2(dx, dy)), 360.0)


def _along(rng, roads, step_lo, step_hi, offset_extra, sides=(1.0, -1.0), stagger=False):
    """Points along roads at sidewalk offset; returns xy, heading facing the road, road index, tangent az."""
    xy, head, ridx, taz = [], [], [], []
    for i, (line, width, side) in enumerate(
        zip(roads.geometry.values, roads["width"], roads["_sidewalk"], strict=True)
    ):
        if line.length < 15:
            continue
        step = rng.uniform(step_lo, step_hi)
        s0 = np.arange(rng.uniform(1, step), line.length - 1, step)
        if len(s0) == 0:
            continue
        for k, sign in enumerate(sides):
            s = s0 + (step / 2 if stagger and k else 0.0)
            s = s[s < line.length - 1]
            a = shapely.get_coordinates(shapely.line_interpolate_point(line, np.maximum(s - 0.5, 0)))
            b = shapely.get_coordinates(shapely.line_interpolate_point(line, s + 0.5))
            t = b - a
            t /= np.maximum(np.hypot(t[:, 0], t[:, 1]), 1e-9)[:, None]
            nrm = np.column_stack([-t[:, 1], t[:, 0]]) * sign
            off = width / 2 + min(offset_extra, side) if offset_extra >= 0 else width / 2 + side - offset_extra
            p = (a + b) / 2 + nrm * off
            xy.append(p)
            head.append(_azimuth(-nrm[:, 0], -nrm[:, 1]))  # facing the road
            ridx.append(np.full(len(p), i))
            taz.append(_azimuth(t[:, 0], t[:, 1]))
    if not xy:
        return np.empty((0, 2)), np.empty(0), np.empty(0, int), np.empty(0)
    return np.vstack(xy), np.concatenate(head), np.concatenate(ridx), np.concatenate(taz)


def build(rng: np.random.Generator, d: District) -> None:
    roads = d.roads.reset_index(drop=True)
    rows_xy, rows_type, rows_head, rows_h, rows_name, rows_road = [], [], [], [], [], []

    def add(xy, kind, head, h, name=None, road=None):
        """``road``: per item, the index in ``roads`` of the street it was placed along (-1: none)."""
        n = len(xy)
        if n == 0:
            return
        rows_road.append(np.full(n, -1, dtype=np.int64) if road is None else np.asarray(road, dtype=np.int64))
        rows_xy.append(np.asarray(xy, dtype=float).reshape(-1, 2))
        rows_type.append(np.full(n, kind, dtype=object))
        rows_head.append(np.round(np.broadcast_to(np.asarray(head, dtype=float), (n,)), 1))
        rows_h.append(np.round(np.broadcast_to(np.asarray(h, dtype=float), (n,)), 2))
        rows_name.append(np.full(n, name, dtype=object) if not isinstance(name, np.ndarray) else name)

    street = roads[roads["class"] != "service"]
    major = roads[roads["class"].isin(MAJOR)]
    tertiary = roads[roads["class"] == "tertiary"]
    residential = roads[roads["class"] == "residential"]
    primary = roads[roads["class"] == "primary"]
    secondary = roads[roads["class"] == "secondary"]
    # lamps: every ~30 m, both sides of major streets, one side elsewhere
    xy, hd, ri, _ = _along(rng, major, 28, 32, 0.8, stagger=True)
    add(xy, "street_lamp", hd, rng.choice([10.0, 12.0], len(xy)), road=major.index.to_numpy()[ri])
    xy, hd, ri, _ = _along(rng, tertiary, 28, 34, 0.8, stagger=True)
    add(xy, "street_lamp", hd, rng.choice([8.0, 10.0], len(xy)), road=tertiary.index.to_numpy()[ri])
    xy, hd, ri, _ = _along(rng, residential, 28, 34, 0.8, sides=(1.0,))
    add(xy, "street_lamp", hd, rng.choice([6.0, 8.0], len(xy)), road=residential.index.to_numpy()[ri])
    # hydrants every ~100 m
    xy, hd, ri, _ = _along(rng, street, 90, 110, 0.8, sides=(-1.0,))
    add(xy, "fire_hydrant", hd, 0.9, road=street.index.to_numpy()[ri])
    xy, hd, ri, _ = _along(rng, major, 90, 110, 0.8, sides=(1.0,))
    add(xy, "fire_hydrant", hd, 0.9, road=major.index.to_numpy()[ri])
    # bins every ~45 m on major/tertiary sidewalks, benches every ~120 m
    mt = roads[roads["class"].isin(["primary", "secondary", "tertiary"])]
    xy, hd, ri, _ = _along(rng, mt, 30, 38, 1.8, stagger=True)
    add(xy, "waste_bin", hd, 1.0, road=mt.index.to_numpy()[ri])
    xy, hd, ri, _ = _along(rng, mt, 110, 140, 2.2)
    add(xy, "bench", hd, 0.85, road=mt.index.to_numpy()[ri])
    # billboards on primary streets; signs every ~150 m on streets
    xy, hd, ri, _ = _along(rng, primary, 90, 130, 2.6, stagger=True)
    add(xy, "billboard", hd, rng.uniform(5.0, 8.0, len(xy)), road=primary.index.to_numpy()[ri])
    xy, hd, ri, _ = _along(rng, street, 120, 160, 0.9, stagger=True)
    add(xy, "sign", hd, rng.uniform(2.5, 3.5, len(xy)), road=street.index.to_numpy()[ri])
    # bus shelters every ~500 m on main roads, parallel to the road
    xy, hd, ri, taz = _along(rng, major, 480, 520, 1.5, stagger=True)
    add(xy, "bus_shelter", taz, 2.6, road=major.index.to_numpy()[ri])
    # kiosks and toilets
    xy, hd, ri, _ = _along(rng, major, 380, 460, 2.5, sides=(-1.0,))
    add(xy, "kiosk", hd, 2.8, road=major.index.to_numpy()[ri])
    xy, hd, ri, _ = _along(rng, secondary, 700, 900, 2.5, sides=(1.0,))
    add(xy, "toilet", hd, 3.2, road=secondary.index.to_numpy()[ri])

    # traffic signals at intersections of major streets, facing each approach
    g = d.graph
    cls = roads["class"].to_numpy()[g.road_index]
    is_major = np.isin(cls, MAJOR)
    ends = np.concatenate([g.u, g.v])
    seg = np.concatenate([np.arange(len(g.u))] * 2)
    maj_deg = np.bincount(ends[np.concatenate([is_major, is_major])], minlength=len(g.nodes))
    road_names = roads["name"].to_numpy()[g.road_index]
    sig_nodes = []
    for node in np.flatnonzero(maj_deg >= 3):
        segs = seg[(ends == node)]
        if len({road_names[s] for s in segs if is_major[s]}) >= 2:
            sig_nodes.append(node)
    sxy, shead, sroad = [], [], []
    for node in sig_nodes:
        p = g.nodes[node]
        for s in seg[ends == node]:
            line = g.segments[s]
            far = shapely.get_coordinates(line)
            q = far[1] if np.allclose(far[0], p, atol=0.2) else far[-2]
            t = q - p
            t /= max(np.hypot(*t), 1e-9)
            w = roads["width"].iloc[g.road_index[s]]
            # at the kerb on the right of traffic approaching the node, before the stop line
            right = np.array([t[1], -t[0]]) * -1.0
            sxy.append(p + t * 18.0 + right * (w / 2 + 0.8))
            shead.append(_azimuth(t[0], t[1]))  # the face points along the approach, at the traffic
            sroad.append(g.road_index[s])
    if sxy:
        add(np.array(sxy), "traffic_signal", np.array(shead), 6.0, road=np.array(sroad))

    # parks: benches, bins, fitness, toilets; three sculptures
    parks = d.green[d.green["kind"] == "park"]
    from .common import sample_in_polygon

    for poly in parks.geometry:
        n = max(2, int(poly.area / 1500))
        add(sample_in_polygon(rng, poly, n), "bench", rng.uniform(0, 360, n), 0.85)
        add(sample_in_polygon(rng, poly, n // 2 + 1), "waste_bin", 0.0, 1.0)
        centre = sample_in_polygon(rng, poly.buffer(-15) if poly.buffer(-15).area > 100 else poly, 1)
        if len(centre):
            k = int(rng.integers(6, 12))
            ang = rng.uniform(0, 2 * np.pi, k)
            rad = rng.uniform(2, 9, k)
            add(
                centre + np.column_stack([np.cos(ang), np.sin(ang)]) * rad[:, None],
                "fitness",
                rng.choice([0.0, 90.0, 180.0, 270.0], k),
                rng.uniform(1.2, 2.4, k),
            )
        if poly.area > 20000:
            add(sample_in_polygon(rng, poly, 1), "toilet", rng.uniform(0, 360), 3.2)
            add(sample_in_polygon(rng, poly, 2), "kiosk", rng.uniform(0, 360, 2), 2.8)
    # courtyard benches and bins in compounds
    yards = d.green[d.green["kind"] == "courtyard"]
    for poly in yards.geometry:
        n = int(poly.area // 1200)
        if n:
            add(sample_in_polygon(rng, poly, n), "bench", rng.uniform(0, 360, n), 0.85)
            add(sample_in_polygon(rng, poly, n), "waste_bin", 0.0, 1.0)

    xy = np.vstack(rows_xy)
    ftype = np.concatenate(rows_type)
    head = np.concatenate(rows_head)
    height = np.concatenate(rows_h)
    name = np.concatenate(rows_name)
    road = np.concatenate(rows_road)
    ok = _clear(d, xy, 0.3)
    # sculptures in the largest parks (retry until clear)
    big = parks.assign(a=parks.area).sort_values("a", ascending=False).geometry.values
    sc_xy, sc_h, sc_n = [], [], []
    for k, (nm, h) in enumerate(SCULPTURES):
        poly = big[k % len(big)]
        for _ in range(20):
            p = sample_in_polygon(rng, poly.buffer(-10) if poly.buffer(-10).area > 50 else poly, 4)
            p = [q for q in p[_clear(d, p, 2.0)] if all(np.hypot(*(q - r)) > 30 for r in sc_xy)]
            if p:
                sc_xy.append(p[0])
                break
        else:
            raise RuntimeError(f"no free place for sculpture {nm}")
        sc_h.append(h)
        sc_n.append(nm)
    xy = np.vstack([xy[ok], np.array(sc_xy)])
    ftype = np.concatenate([ftype[ok], np.full(len(sc_xy), "sculpture", dtype=object)])
    head = np.concatenate([head[ok], np.round(rng.uniform(0, 360, len(sc_xy)), 1)])
    height = np.concatenate([height[ok], np.array(sc_h)])
    name = np.concatenate([name[ok], np.array(sc_n, dtype=object)])
    road = np.concatenate([road[ok], np.full(len(sc_xy), -1, dtype=np.int64)])
    # keep items 1 m apart
    pts = shapely.points(np.round(xy, 2))
    tree = shapely.STRtree(pts)
    a, b = tree.query(pts, predicate="dwithin", distance=1.0)
    keep = np.ones(len(pts), dtype=bool)
    close = a < b
    keep[np.unique(b[close & (ftype[b] != "sculpture")])] = False
    keep[np.unique(a[close & (ftype[b] == "sculpture")])] = False
    keep[ftype == "sculpture"] = True
    pts, ftype, head, height, name = pts[keep], ftype[keep], head[keep], height[keep], name[keep]
    road = road[keep]
    # the street an item was placed along; otherwise (parks, signals) the nearest within 40 m
    rtree = shapely.STRtree(roads.geometry.values)
    pi, ri = rtree.query_nearest(pts, max_distance=40.0, all_matches=False)
    nearest = np.full(len(pts), -1, dtype=np.int64)
    nearest[pi] = ri
    road = np.where(road >= 0, road, nearest)
    road_id = np.full(len(pts), None, dtype=object)
    road_id[road >= 0] = roads["id"].to_numpy()[road[road >= 0]]
    n = len(pts)
    d.furniture = gpd.GeoDataFrame(
        {
            "id": [f"F{i + 1:06d}" for i in range(n)],
            "type": ftype,
            "heading": head.astype(float),
            "height": height.astype(float),
            "name": name,
            "road_id": road_id,
        },
        geometry=pts,
        crs=CRS_4548,
    )


def _clear(d: District, xy: np.ndarray, dist: float) -> np.ndarray:
    """True where a point is inside the boundary, off buildings, carriageways and water."""
    pts = shapely.points(xy)
    bad = ~shapely.contains_xy(d.boundary, xy[:, 0], xy[:, 1])
    if "cw_tree" not in d.extras:
        d.extras["cw_tree"] = shapely.STRtree(carriageways(d.roads, 0.2))
        d.extras["bld_tree"] = shapely.STRtree(d.buildings.geometry.values)
        d.extras["water_tree"] = shapely.STRtree(np.array([d.lake, d.river], dtype=object))
    for key in ("cw_tree", "bld_tree", "water_tree"):
        hit = d.extras[key].query(pts, predicate="dwithin", distance=dist)[0]
        bad[hit] = True
    return ~bad
