"""Trees (street rows, parks, courtyards), green areas and water bodies."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from .common import (
    CRS_4548,
    DEM_MARGIN_M,
    LAKE_LEVEL_M,
    RIVER_LEVEL_M,
    District,
    round_geoms,
    sample_in_polygon,
)
from .roads import LAKE_ROAD_OFFSET_M, carriageways

# species: (height range m, crown/height ratio range)
STREET_SPECIES = {
    "悬铃木": (10, 18, 0.55, 0.8),
    "香樟": (8, 15, 0.6, 0.85),
    "国槐": (8, 14, 0.55, 0.8),
    "栾树": (7, 12, 0.55, 0.75),
    "银杏": (8, 16, 0.35, 0.5),
}
PARK_SPECIES = {
    "香樟": (8, 16, 0.6, 0.85),
    "垂柳": (6, 12, 0.7, 1.0),
    "水杉": (12, 25, 0.2, 0.3),
    "雪松": (8, 18, 0.35, 0.5),
    "广玉兰": (6, 12, 0.5, 0.7),
    "桂花": (3, 6, 0.7, 0.9),
    "女贞": (5, 9, 0.6, 0.8),
    "樱花": (4, 7, 0.8, 1.0),
}
YARD_SPECIES = {
    "女贞": (5, 9, 0.6, 0.8),
    "桂花": (3, 6, 0.7, 0.9),
    "石榴": (3, 5, 0.8, 1.0),
    "香樟": (7, 13, 0.6, 0.85),
    "枇杷": (4, 7, 0.7, 0.9),
}


def _draw(rng, species: dict, n: int, road_species: np.ndarray | None = None):
    names = list(species)
    sp = (
        road_species
        if road_species is not None
        else np.array(names, dtype=object)[rng.integers(0, len(names), n)]
    )
    lo = np.array([species[s][0] for s in sp], dtype=float)
    hi = np.array([species[s][1] for s in sp], dtype=float)
    r0 = np.array([species[s][2] for s in sp], dtype=float)
    r1 = np.array([species[s][3] for s in sp], dtype=float)
    h = np.round(lo + (hi - lo) * rng.beta(2.5, 2.0, n), 1)
    c = np.round(h * (r0 + (r1 - r0) * rng.random(n)), 1)
    return sp, h, np.maximum(c, 1.0)


def _street_rows(rng, d: District):
    roads = d.roads[d.roads["class"].isin(["primary", "secondary", "tertiary"]) & (d.roads["bridge"] == 0)]
    pts, sp_all = [], []
    names = list(STREET_SPECIES)
    for line, width, side in zip(roads.geometry.values, roads["width"], roads["_sidewalk"], strict=True):
        if line.length < 20:
            continue
        step = rng.uniform(6.0, 8.0)
        sp = names[int(rng.integers(len(names)))]  # one species per street section
        s = np.arange(rng.uniform(2, step), line.length, step)
        for sign in (1.0, -1.0):
            off = line.offset_curve(sign * (width / 2 + side - 1.2), quad_segs=2)
            if off.is_empty or off.geom_type != "LineString":
                continue
            ss = s * off.length / line.length
            p = shapely.get_coordinates(shapely.line_interpolate_point(off, ss))
            p = p + rng.normal(0, 0.15, p.shape)
            pts.append(p)
            sp_all += [sp] * len(p)
    return np.vstack(pts), np.array(sp_all, dtype=object)


def build(rng: np.random.Generator, d: District) -> None:
    b = d.buildings
    plots = d.plots
    # ----- green areas
    green_geoms, green_kind, green_name = [], [], []
    for g, nm in zip(
        plots.geometry[plots["kind"] == "park"], plots["name"][plots["kind"] == "park"], strict=True
    ):
        green_geoms.append(g.buffer(-2))
        green_kind.append("park")
        green_name.append(nm)
    lakeside = d.boundary.intersection(d.lake.buffer(LAKE_ROAD_OFFSET_M - 8)).difference(d.lake.buffer(3))
    for part in shapely.get_parts(lakeside):
        if part.area > 2000:
            green_geoms.append(part)
            green_kind.append("park")
            green_name.append("龙子湖滨湖公园")
    riverside = d.boundary.intersection(d.river.buffer(13)).difference(d.river.buffer(2))
    cw_all = carriageways(d.roads, 1.0)
    near = cw_all[shapely.STRtree(cw_all).query(riverside, predicate="intersects")]
    if len(near):
        riverside = riverside.difference(shapely.union_all(near))
    for part in shapely.get_parts(riverside):
        if part.area > 800:
            green_geoms.append(part)
            green_kind.append("green_space")
            green_name.append("席家沟滨河绿带")
    for pg, nm in d.extras.get("playgrounds", []):
        green_geoms.append(pg)
        green_kind.append("green_space")
        green_name.append(nm)
    # courtyards of slab/tower compounds: the compound minus buildings (+ clearance)
    btree = shapely.STRtree(b.geometry.values)
    for g, kind, comp in zip(plots.geometry, plots["kind"], plots["compound"], strict=True):
        if kind not in ("slab", "tower"):
            continue
        idx = btree.query(g, predicate="intersects")
        yard = g.buffer(-3)
        if len(idx):
            yard = yard.difference(
                shapely.union_all(shapely.buffer(b.geometry.values[idx], 4.0, quad_segs=1))
            )
        for part in shapely.get_parts(yard):
            if part.area > 250:
                green_geoms.append(part)
                green_kind.append("courtyard")
                green_name.append(f"{comp}绿地")
    # central separators of primary streets
    prim = d.roads[(d.roads["class"] == "primary") & (d.roads["bridge"] == 0)]
    sep = shapely.buffer(prim.geometry.values, 1.0, cap_style="flat")
    minor = d.roads[d.roads["class"] != "primary"]
    cw_minor = carriageways(minor, 2.0)
    hits = shapely.STRtree(cw_minor).query(sep, predicate="intersects")
    for k, g in enumerate(sep):
        near = cw_minor[hits[1][hits[0] == k]]
        if len(near):
            g = g.difference(shapely.union_all(near))
        for part in shapely.get_parts(g):
            if part.area > 40:
                green_geoms.append(part)
                green_kind.append("separator")
                green_name.append("道路隔离带")
    green_geoms = round_geoms(np.array([shapely.set_precision(g, 0.01) for g in green_geoms], dtype=object))
    ok = ~shapely.is_empty(green_geoms) & shapely.is_valid(green_geoms)
    ok &= np.array([g.geom_type in ("Polygon", "MultiPolygon") for g in green_geoms])
    green_geoms = green_geoms[ok]
    green = gpd.GeoDataFrame(
        {
            "id": [f"GR{i + 1:04d}" for i in range(int(ok.sum()))],
            "kind": np.array(green_kind, dtype=object)[ok],
            "name": np.array(green_name, dtype=object)[ok],
        },
        geometry=green_geoms,
        crs=CRS_4548,
    )
    d.green = green

    # ----- water: the lake and the river, clipped to the DEM extent
    minx, miny, maxx, maxy = d.boundary.bounds
    clip = shapely.box(minx - DEM_MARGIN_M, miny - DEM_MARGIN_M, maxx + DEM_MARGIN_M, maxy + DEM_MARGIN_M)
    lake = shapely.set_precision(d.lake.intersection(clip), 0.01)
    river = shapely.set_precision(d.river.intersection(clip), 0.01)
    d.water = gpd.GeoDataFrame(
        {
            "id": ["WA01", "WA02"],
            "name": ["龙子湖", "席家沟"],
            "kind": ["lake", "river"],
            "water_level": [LAKE_LEVEL_M, RIVER_LEVEL_M],
        },
        geometry=[lake, river],
        crs=CRS_4548,
    )

    # ----- trees
    st_xy, st_sp = _street_rows(rng, d)
    st_sp, st_h, st_c = _draw(rng, STREET_SPECIES, len(st_xy), st_sp)
    park_xy, yard_xy = [], []
    for g, kind in zip(green.geometry, green["kind"], strict=True):
        if kind == "park":
            park_xy.append(sample_in_polygon(rng, g, int(g.area / 70)))
        elif kind == "courtyard":
            yard_xy.append(sample_in_polygon(rng, g, int(g.area / 90)))
    # courtyard-house blocks: a tree in some yards
    cy_plots = plots[plots["kind"] == "courtyard"]
    for g in cy_plots.geometry:
        yard_xy.append(sample_in_polygon(rng, g, int(g.area / 260)))
    park_xy = np.vstack(park_xy) if park_xy else np.empty((0, 2))
    yard_xy = np.vstack(yard_xy) if yard_xy else np.empty((0, 2))
    pk_sp, pk_h, pk_c = _draw(rng, PARK_SPECIES, len(park_xy))
    yd_sp, yd_h, yd_c = _draw(rng, YARD_SPECIES, len(yard_xy))
    xy = np.vstack([st_xy, park_xy, yard_xy])
    sp = np.concatenate([st_sp, pk_sp, yd_sp])
    h = np.concatenate([st_h, pk_h, yd_h])
    c = np.concatenate([st_c, pk_c, yd_c])
    setting = np.array(
        ["street"] * len(st_xy) + ["park"] * len(park_xy) + ["courtyard"] * len(yard_xy), dtype=object
    )
    pts = shapely.points(np.round(xy, 2))
    bad = np.zeros(len(pts), dtype=bool)
    # not in buildings (1.5 m clearance), carriageways, water or playgrounds; inside the boundary
    for obstacles, dist in (
        (b.geometry.values, 1.5),
        (carriageways(d.roads, 0.5), 0.0),
        (np.array([d.lake, d.river], dtype=object), 1.0),
        (np.array([p for p, _ in d.extras.get("playgrounds", [])], dtype=object), 1.0),
    ):
        if len(obstacles) == 0:
            continue
        tree = shapely.STRtree(obstacles)
        hit = (
            tree.query(pts, predicate="dwithin", distance=dist)[0]
            if dist
            else tree.query(pts, predicate="intersects")[0]
        )
        bad[hit] = True
    bad |= ~shapely.contains_xy(d.boundary, xy[:, 0], xy[:, 1])
    # keep trees 3 m apart (drop the later one of close pairs)
    keep = ~bad
    idx = np.flatnonzero(keep)
    tree = shapely.STRtree(pts[idx])
    a, bb = tree.query(pts[idx], predicate="dwithin", distance=2.5)
    close = a < bb
    drop = np.unique(bb[close])
    keep[idx[drop]] = False
    n = int(keep.sum())
    d.trees = gpd.GeoDataFrame(
        {
            "id": [f"T{i + 1:06d}" for i in range(n)],
            "species": sp[keep],
            "height": h[keep],
            "crown_diameter": c[keep],
            "setting": setting[keep],
        },
        geometry=pts[keep],
        crs=CRS_4548,
    )
