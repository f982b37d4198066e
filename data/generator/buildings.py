"""Building footprints: residential slab compounds, towers, shops along the main streets,
courtyard houses, schools with playgrounds, a hospital, markets, offices, parks (as plots).

Blocks are the land left between road corridors (carriageway + sidewalk + setback) and water;
every block gets one kind, buildings are placed on a per-block lattice (so they never overlap)
and shops on a strip along primary/secondary streets. Plots are stored on ``d.plots`` for the
vegetation and furniture modules.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from .common import CRS_4548, District, rect_polygons, round_geoms, template_polygons
from .names import COMPOUND_WORDS, SLAB_SUFFIX, TOWER_SUFFIX, unique_picks
from .roads import LAKE_ROAD_OFFSET_M, MAJOR

SETBACK_M = 3.0
USE_ZH = {
    "residential": "住宅",
    "commercial": "商业",
    "office": "办公",
    "school": "学校",
    "hospital": "医院",
    "market": "市场",
    "public": "公共服务",
    "industrial": "工业",
    "courtyard_house": "院落民居",
}
# a point tower: a cross-shaped plan in the unit square
CROSS = np.array(
    [
        [-0.5, -0.2],
        [-0.2, -0.2],
        [-0.2, -0.5],
        [0.2, -0.5],
        [0.2, -0.2],
        [0.5, -0.2],
        [0.5, 0.2],
        [0.2, 0.2],
        [0.2, 0.5],
        [-0.2, 0.5],
        [-0.2, 0.2],
        [-0.5, 0.2],
        [-0.5, -0.2],
    ]
)
SCHOOL_NAMES = [
    "育才小学",
    "解放路小学",
    "龙湖中学",
    "实验小学",
    "淮河路小学",
    "第二中学",
    "光明小学",
    "朝阳中学",
    "胜利路小学",
    "青年路中学",
]
MARKET_NAMES = [
    "解放农贸市场",
    "龙湖菜市场",
    "胜利路市场",
    "东风农贸市场",
    "新华菜市场",
    "朝阳农贸市场",
    "延安路市场",
    "和平菜市场",
]
PARK_NAMES = ["解放公园", "龙湖公园", "青年公园", "朝阳公园", "胜利公园", "和平广场", "人民公园"]
OFFICE_WORDS = ["金融", "国贸", "华联", "银泰", "商会", "科技", "电信", "万达", "时代", "中环"]


_INNER: dict = {}  # (id(block), margin) -> inner polygon, cleared by build()


def _lattice(rng, block, angle, bu, bv, gap_u, gap_v, margin=0.0, template=None, jitter=0.0):
    """Footprints (bu x bv) on a lattice over `block` (rotated by angle), kept if inside."""
    key = (id(block), margin)
    inner = _INNER.get(key)
    if inner is None:
        inner = _INNER[key] = block.buffer(-margin, quad_segs=2) if margin > 0 else block
    if inner.is_empty:
        return np.empty(0, dtype=object)
    c, s = np.cos(angle), np.sin(angle)
    xy = shapely.get_coordinates(block.exterior)
    ox, oy = xy[:, 0].mean(), xy[:, 1].mean()
    u = (xy[:, 0] - ox) * c + (xy[:, 1] - oy) * s
    v = -(xy[:, 0] - ox) * s + (xy[:, 1] - oy) * c
    cu, cv = bu + gap_u, bv + gap_v
    nu = int((u.max() - u.min() - 2 * margin + gap_u) // cu)
    nv = int((v.max() - v.min() - 2 * margin + gap_v) // cv)
    su = (u.max() - u.min() - nu * cu + gap_u) / 2
    sv = (v.max() - v.min() - nv * cv + gap_v) / 2
    us = u.min() + su + bu / 2 + np.arange(nu) * cu + rng.uniform(-0.3, 0.3) * min(su, cu)
    vs = v.min() + sv + bv / 2 + np.arange(nv) * cv + rng.uniform(-0.3, 0.3) * min(sv, cv)
    if len(us) == 0 or len(vs) == 0:
        return np.empty(0, dtype=object)
    uu, vv = np.meshgrid(us, vs)
    uu, vv = uu.ravel(), vv.ravel()
    if jitter:
        uu = uu + rng.uniform(-jitter, jitter, len(uu))
    x = ox + uu * c - vv * s
    y = oy + uu * s + vv * c
    if template is None:
        polys = rect_polygons(x, y, bu, bv, angle)
    else:
        polys = template_polygons(
            template, x, y, np.full(len(x), bu), np.full(len(x), bv), np.full(len(x), angle)
        )
    shapely.prepare(inner)
    return polys[shapely.contains(inner, polys)]


def _fit(rng, blk, angle, sizes, gap, margin, limit):
    """The first of `sizes` (largest first) that fits at least once; at most `limit` footprints."""
    for bu, bv in sizes:
        g = _lattice(rng, blk, angle, bu, bv, gap, gap, margin=margin)
        if len(g):
            return g[:limit]
    return np.empty(0, dtype=object)


def _blocks(d: District) -> list:
    r = d.roads
    half = r["width"].to_numpy() / 2 + r["_sidewalk"].to_numpy() + SETBACK_M
    # one buffer per corridor width (buffering a MultiLineString unions it cheaply)
    corr = shapely.union_all(
        [
            shapely.buffer(shapely.multilinestrings(list(r.geometry.values[half == w])), w, quad_segs=2)
            for w in np.unique(half)
        ]
    )
    no_build = corr.union(d.lake.buffer(LAKE_ROAD_OFFSET_M + 15)).union(d.river.buffer(15))
    free = d.boundary.buffer(-2).difference(no_build)
    parts = [g for g in shapely.get_parts(free) if g.area > 300]
    parts = [shapely.set_precision(shapely.Polygon(p.exterior), 0.01) for p in parts]
    parts = [p for p in parts if p.is_valid and p.area > 300]
    cent = np.array([[p.centroid.x, p.centroid.y] for p in parts])
    order = np.lexsort((np.round(cent[:, 0]), -np.round(cent[:, 1] / 50)))
    return [parts[i] for i in order]


def _pick_spread(rng, cand: np.ndarray, cent: np.ndarray, n: int, min_dist: float) -> list[int]:
    out: list[int] = []
    for i in rng.permutation(cand):
        if all(np.hypot(*(cent[i] - cent[j])) > min_dist for j in out):
            out.append(int(i))
        if len(out) == n:
            break
    return out


def _shops(rng, d: District, blocks: list) -> tuple[np.ndarray, list[str]]:
    """Shop rows along the outer edge of blocks facing primary/secondary streets."""
    roads = d.roads[d.roads["class"].isin(MAJOR) & (d.roads["bridge"] == 0)]
    geoms, names = [], []
    btree = shapely.STRtree(blocks)
    for line, width, side, name in zip(
        roads.geometry.values, roads["width"], roads["_sidewalk"], roads["name"], strict=True
    ):
        if line.length < 60:
            continue
        step = rng.uniform(14.0, 18.0)
        s = np.arange(10.0, line.length - 10.0, step)
        p0 = shapely.get_coordinates(shapely.line_interpolate_point(line, s - 1.0))
        p1 = shapely.get_coordinates(shapely.line_interpolate_point(line, s + 1.0))
        t = p1 - p0
        t /= np.maximum(np.hypot(t[:, 0], t[:, 1]), 1e-9)[:, None]
        nrm = np.column_stack([-t[:, 1], t[:, 0]])
        mid = (p0 + p1) / 2
        ang = np.arctan2(t[:, 1], t[:, 0])
        depth = rng.uniform(9.0, 12.0)
        off = width / 2 + side + SETBACK_M + 0.6 + depth / 2
        for sign in (1.0, -1.0):
            c = mid + sign * nrm * off
            polys = rect_polygons(c[:, 0], c[:, 1], np.full(len(c), step - 2.5), depth, ang)
            ok = np.zeros(len(polys), dtype=bool)
            ok[btree.query(polys, predicate="within")[0]] = True
            # shop rows have gaps (gates, alleys)
            ok &= rng.random(len(polys)) < 0.8
            for k, g in enumerate(polys[ok]):
                geoms.append(g)
                names.append(f"{name}{int(s[ok][k] // 10) * 2 + (1 if sign > 0 else 2)}号商铺")
    return np.array(geoms, dtype=object), names


def _drop_overlaps(polys: np.ndarray, keep_first: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask: drop any footprint intersecting an earlier kept one (with 1 m clearance)."""
    n = len(polys)
    keep = np.ones(n, dtype=bool)
    tree = shapely.STRtree(polys)
    a, b = tree.query(shapely.buffer(polys, 0.5, join_style="mitre"), predicate="intersects")
    pairs = a < b
    for i, j in zip(a[pairs], b[pairs], strict=True):
        if keep[i] and keep[j]:
            keep[j] = False
    return keep


def build(rng: np.random.Generator, d: District) -> None:
    angle = d.extras.get("grid_angle", 0.0)
    _INNER.clear()
    blocks = _blocks(d)
    nb = len(blocks)
    area = np.array([b.area for b in blocks])
    cent = np.array([[b.centroid.x, b.centroid.y] for b in blocks])
    cx, cy = d.boundary.centroid.x, d.boundary.centroid.y
    kinds = np.full(nb, "", dtype=object)
    mid_sized = np.flatnonzero((area > 9000) & (area < 45000))
    # a hospital near the centre, schools and parks spread out, markets, offices, industry
    dist_c = np.hypot(cent[:, 0] - cx, cent[:, 1] - cy)
    hosp = int(mid_sized[np.argmin(dist_c[mid_sized])])
    kinds[hosp] = "hospital"
    schools = _pick_spread(rng, np.setdiff1d(mid_sized, [hosp]), cent, 8, 450)
    kinds[schools] = "school"
    free = np.flatnonzero((kinds == "") & (area > 12000))
    parks = _pick_spread(rng, free, cent, 4, 700)
    kinds[parks] = "park"
    free = np.flatnonzero((kinds == "") & (area > 2500) & (area < 20000))
    markets = _pick_spread(rng, free, cent, 6, 400)
    kinds[markets] = "market"
    # industry: a few blocks along the river (old factories)
    rd = shapely.distance(d.river, shapely.points(cent))
    free = np.flatnonzero((kinds == "") & (area > 6000) & (rd < 250))
    kinds[rng.permutation(free)[:3]] = "industrial"
    # character of each community: old town (courtyards), slab estates, new towers
    comm = d.communities
    ctree = shapely.STRtree(comm.geometry.values)
    block_comm = ctree.query_nearest(shapely.points(cent), all_matches=False)[1]
    character = rng.choice(["old", "slab", "slab", "tower"], len(comm), p=[0.3, 0.25, 0.25, 0.2])
    major_lines = d.roads[d.roads["class"] == "primary"].geometry.values
    near_primary = shapely.distance(shapely.multilinestrings(list(major_lines)), shapely.points(cent)) < 120
    for i in np.flatnonzero(kinds == ""):
        ch = character[block_comm[i]]
        r = rng.random()
        if area[i] < 1200:
            kinds[i] = "courtyard" if r < 0.7 else "public"
        elif near_primary[i] and area[i] > 5000 and r < 0.25:
            kinds[i] = "office"
        elif ch == "old":
            kinds[i] = "courtyard" if r < 0.65 else "slab"
        elif ch == "slab":
            kinds[i] = "slab" if r < 0.8 else ("tower" if r < 0.9 else "courtyard")
        else:
            kinds[i] = "tower" if r < 0.6 else "slab"

    shop_geoms, shop_names = _shops(rng, d, [b for b, k in zip(blocks, kinds, strict=True) if k != "park"])

    compound_pool = unique_picks(rng, COMPOUND_WORDS, 400)
    ci = 0
    recs: list[tuple] = []  # geom, kind-use, floors, roof, name, compound, plot index
    plot_rows = []
    playgrounds = []
    school_names = unique_picks(rng, SCHOOL_NAMES, len(schools))
    market_names = unique_picks(rng, MARKET_NAMES, len(markets))
    park_names = unique_picks(rng, PARK_NAMES, len(parks))
    si = mi = pi = oi = 0
    for i, (blk, kind) in enumerate(zip(blocks, kinds, strict=True)):
        plot_name = None
        compound = None
        if kind == "park":
            plot_name = park_names[pi]
            pi += 1
            plot_rows.append((blk, kind, plot_name, None))
            continue
        if kind == "slab":
            compound = f"{compound_pool[ci]}{SLAB_SUFFIX[int(rng.integers(len(SLAB_SUFFIX)))]}"
            ci += 1
            L, W = rng.uniform(44, 62), rng.uniform(11, 13)
            gu, gv = rng.uniform(8, 12), rng.uniform(17, 22)
            g = max(
                (_lattice(rng, blk, angle, L * f, W, gu, gv, margin=3) for f in (1.0, 0.72, 0.5)),
                key=lambda a: len(a) * (1 + 0.01 * (shapely.area(a).sum() if len(a) else 0)),
            )
            fl = rng.integers(6, 8, len(g))
            roof = rng.choice(["flat", "gable"], len(g), p=[0.6, 0.4])
            for k, p in enumerate(g):
                recs.append((p, "residential", int(fl[k]), roof[k], f"{compound}{k + 1}号楼", compound, i))
        elif kind == "tower":
            compound = f"{compound_pool[ci]}{TOWER_SUFFIX[int(rng.integers(len(TOWER_SUFFIX)))]}"
            ci += 1
            cross = rng.random() < 0.4
            bu, bv = (30.0, 30.0) if cross else (rng.uniform(32, 42), rng.uniform(16, 19))
            g = _lattice(
                rng,
                blk,
                angle,
                bu,
                bv,
                rng.uniform(22, 30),
                rng.uniform(34, 44),
                margin=6,
                template=CROSS if cross else None,
            )
            fl = rng.integers(18, 34, len(g))
            for k, p in enumerate(g):
                recs.append((p, "residential", int(fl[k]), "flat", f"{compound}{k + 1}栋", compound, i))
            # a podium clubhouse
        elif kind == "courtyard":
            g = _lattice(
                rng,
                blk,
                angle + rng.normal(0, 0.03),
                rng.uniform(9, 12),
                rng.uniform(7, 9.5),
                rng.uniform(3.5, 5.5),
                rng.uniform(4, 6),
                margin=1.5,
                jitter=0.8,
            )
            fl = rng.choice([1, 1, 2, 2, 3], len(g))
            roof = rng.choice(["gable", "hip", "flat"], len(g), p=[0.6, 0.25, 0.15])
            for k, p in enumerate(g):
                recs.append((p, "courtyard_house", int(fl[k]), roof[k], None, None, i))
        elif kind == "public":
            g = _lattice(rng, blk, angle, rng.uniform(14, 22), rng.uniform(10, 14), 8, 8, margin=2)[:2]
            for p in g:
                recs.append((p, "public", int(rng.integers(2, 5)), "flat", None, None, i))
        elif kind == "office":
            plot_name = (
                f"{OFFICE_WORDS[oi % len(OFFICE_WORDS)]}{'大厦' if oi < len(OFFICE_WORDS) else '中心'}"
            )
            oi += 1
            g = _lattice(rng, blk, angle, rng.uniform(30, 40), rng.uniform(20, 26), 28, 30, margin=6)
            fl = rng.integers(10, 27, len(g))
            for k, p in enumerate(g):
                recs.append((p, "office", int(fl[k]), "flat", f"{plot_name}{'ABCDEFGH'[k % 8]}座", None, i))
        elif kind == "industrial":
            compound = f"蚌埠{compound_pool[ci]}厂"
            ci += 1
            g = _lattice(rng, blk, angle, rng.uniform(36, 50), rng.uniform(18, 24), 12, 14, margin=5)
            for k, p in enumerate(g):
                recs.append(
                    (
                        p,
                        "industrial",
                        int(rng.integers(1, 3)),
                        "gable",
                        f"{compound}{k + 1}号车间",
                        compound,
                        i,
                    )
                )
        elif kind == "market":
            plot_name = market_names[mi]
            mi += 1
            g = _fit(rng, blk, angle, [(50, 30), (38, 24), (26, 18)], 14, 4, 2)
            for k, p in enumerate(g):
                recs.append(
                    (p, "market", int(rng.integers(1, 3)), "flat", f"{plot_name}{'一二'[k]}号厅", None, i)
                )
            rest = blk.difference(shapely.union_all(shapely.buffer(g, 6))) if len(g) else blk
            for part in shapely.get_parts(rest):
                if part.area < 200:
                    continue
                h = _lattice(rng, part, angle, 12, 9, 3, 4, margin=1.5)[:30]
                for p in h:
                    recs.append((p, "commercial", int(rng.integers(1, 3)), "flat", None, None, i))
        elif kind == "school":
            plot_name = school_names[si]
            si += 1
            pl = np.empty(0, dtype=object)
            for pu, pv in ((100, 60), (80, 50), (60, 40)):
                pl = _lattice(rng, blk, angle, pu, pv, 400, 400, margin=6)
                if len(pl) == 0:
                    pl = _lattice(rng, blk, angle, pu, pv, 8, 8, margin=6)[:1]
                if len(pl):
                    pl = pl[:1]
                    break
            if len(pl):
                playgrounds.append((pl[0], f"{plot_name}操场"))
                rest = blk.difference(pl[0].buffer(8))
                rest = max(shapely.get_parts(rest), key=lambda g: g.area) if not rest.is_empty else blk
            else:
                rest = blk
            g = _fit(rng, rest, angle, [(55, 15), (40, 14), (28, 12)], 16, 4, 4)
            for k, p in enumerate(g):
                recs.append(
                    (
                        p,
                        "school",
                        int(rng.integers(3, 6)),
                        "flat",
                        f"{plot_name}{['教学楼', '实验楼', '综合楼', '行政楼'][k]}",
                        None,
                        i,
                    )
                )
        elif kind == "hospital":
            plot_name = "龙子湖区人民医院"
            g = _fit(rng, blk, angle, [(42, 30), (32, 22)], 18, 5, 6)
            parts_names = ["门诊楼", "住院部", "医技楼", "急诊楼", "行政楼", "后勤楼"]
            for k, p in enumerate(g):
                fl = 16 if k == 1 else int(rng.integers(3, 7))
                recs.append((p, "hospital", fl, "flat", f"{plot_name}{parts_names[k]}", None, i))
        plot_rows.append((blk, kind, plot_name, compound))

    geoms = np.array([r[0] for r in recs], dtype=object)
    # shops first: lattice buildings yield to the shop rows
    hit = shapely.STRtree(shapely.buffer(shop_geoms, 5.0, quad_segs=1)).query(geoms, predicate="intersects")[
        0
    ]
    clear = ~np.isin(np.arange(len(geoms)), hit) | np.isin(
        [r[1] for r in recs], ["school", "hospital", "market"]
    )
    recs = [r for r, ok in zip(recs, clear, strict=True) if ok]
    n_shop = len(shop_geoms)
    fl_shop = rng.choice([1, 2, 2, 3], n_shop)
    roof_shop = rng.choice(["flat", "gable"], n_shop, p=[0.7, 0.3])
    shop_recs = [
        (g, "commercial", int(fl_shop[k]), roof_shop[k], shop_names[k], None, -1)
        for k, g in enumerate(shop_geoms)
    ]
    recs = shop_recs + recs
    geoms = round_geoms(np.array([r[0] for r in recs], dtype=object))
    keep = _drop_overlaps(geoms) & shapely.is_valid(geoms) & shapely.within(geoms, d.land)
    recs = [r for r, ok in zip(recs, keep, strict=True) if ok]
    geoms = geoms[keep]

    n = len(recs)
    use = np.array([r[1] for r in recs], dtype=object)
    floors = np.array([r[2] for r in recs], dtype=float)
    storey = np.where(np.isin(use, ["market", "industrial"]), 5.0, np.where(use == "commercial", 3.6, 3.0))
    storey = np.where(use == "school", 3.6, storey)
    height = np.round(floors * storey + rng.uniform(0.3, 1.8, n) + rng.normal(0, 0.25, n), 1)
    roof = np.array([r[3] for r in recs], dtype=object)
    roof[rng.random(n) < 0.2] = None
    null_h = rng.random(n) < 0.08
    null_f = (~null_h) & (rng.random(n) < 0.04)
    height_out = np.where(null_h, np.nan, height)
    floors_out = np.where(null_f, np.nan, floors)
    # names: courtyard houses and unnamed buildings get a door-plate name from the nearest road
    cent_b = shapely.centroid(geoms)
    rtree = shapely.STRtree(d.roads.geometry.values)
    near_road = rtree.query_nearest(cent_b, all_matches=False)[1]
    road_names = d.roads["name"].to_numpy()[near_road]
    names = []
    counters: dict[str, int] = {}
    for k, r in enumerate(recs):
        if r[4] is not None:
            names.append(r[4])
            continue
        rn = road_names[k] or "解放路"
        counters[rn] = counters.get(rn, 0) + 1
        suffix = {"public": "社区服务站", "commercial": "号商铺"}.get(r[1], "号")
        names.append(
            f"{rn}{counters[rn]}{suffix}" if suffix.startswith("号") else f"{rn}{suffix}{counters[rn]}"
        )
    comm_idx = ctree.query_nearest(cent_b, all_matches=False)[1]
    gdf = gpd.GeoDataFrame(
        {
            "id": [f"B{i + 1:06d}" for i in range(n)],
            "name": names,
            "floors": pd_int(floors_out),
            "height": height_out,
            "use": use,
            "roof_type": roof,
            "community": comm["id"].to_numpy()[comm_idx],
            "compound": [r[5] for r in recs],
        },
        geometry=geoms,
        crs=CRS_4548,
    )
    d.buildings = gdf
    d.extras["building_floors"] = floors  # true floors (before nulls), for population and point cloud
    d.extras["building_height"] = height
    d.plots = gpd.GeoDataFrame(
        {
            "kind": [p[1] for p in plot_rows],
            "name": [p[2] for p in plot_rows],
            "compound": [p[3] for p in plot_rows],
        },
        geometry=[p[0] for p in plot_rows],
        crs=CRS_4548,
    )
    d.extras["playgrounds"] = playgrounds
    _INNER.clear()
    d.extras["markets"] = [p for p, k in zip(blocks, kinds, strict=True) if k == "market"]
    d.extras["schools"] = [p for p, k in zip(blocks, kinds, strict=True) if k == "school"]


def pd_int(values: np.ndarray):
    """float array with NaN -> nullable Int64."""
    import pandas as pd

    return pd.Series(values).astype("Int64").to_numpy()
