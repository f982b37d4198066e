"""Service facilities (issue 16): community service stations and convenience service terminals
(one each per community), elderly-care institutions, clinics, schools, police posts and
convenience stores. Points in EPSG:4548 on building sites near roads; names are made up (no
person, phone or ID number anywhere).

Placement: a community's service station sits in its public-service building nearest the
community's centre (else its building nearest the centre), its terminal at the entrance of
another building near a road; schools on the school plots; the rest on buildings of a plausible
use (care homes on residential blocks, clinics, police posts and stores at street-front
commercial/office/public buildings), spread over the district. Deterministic per seed.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from .common import CRS_4548, District, round_geoms

ELDERLY_NAMES = ["康乐", "福寿", "颐和", "安泰", "松鹤", "晚晴", "常青", "乐龄"]
STORE_BRANDS = ["好邻居", "邻里", "惠家", "优选", "便民", "喜客", "家家乐", "快客"]
#: kind -> how many (per district) for the kinds not tied to communities
COUNTS = {"elderly_care": 6, "clinic": 8, "police": 4, "convenience_store": 36}


def _entrance(geom, roads_tree, roads) -> shapely.Point:
    """A point just inside the building, on the side facing its nearest road."""
    inside = shapely.point_on_surface(geom)
    road = roads[roads_tree.query_nearest(inside, all_matches=False)[0]]
    edge = shapely.shortest_line(geom.exterior if geom.geom_type == "Polygon" else geom.geoms[0].exterior, road)
    door = shapely.get_point(edge, 0)
    # 0.5 m from the wall towards the inside point (stays on the building site)
    v = np.array([inside.x - door.x, inside.y - door.y])
    n = np.hypot(*v)
    return door if n == 0 else shapely.Point(door.x + v[0] / n * 0.5, door.y + v[1] / n * 0.5)


def _spread(rng: np.random.Generator, xy: np.ndarray, n: int, min_dist: float) -> list[int]:
    """Up to n indices of xy in random order, keeping picks at least min_dist apart (relaxed
    when the district runs out of room)."""
    order = rng.permutation(len(xy))
    for d in (min_dist, min_dist / 2, 0.0):
        picked: list[int] = []
        for i in order:
            if all(np.hypot(*(xy[i] - xy[j])) >= d for j in picked):
                picked.append(int(i))
            if len(picked) == n:
                return picked
    return picked


def build(rng: np.random.Generator, d: District) -> None:
    b = d.buildings
    geoms = b.geometry.to_numpy()
    use = b["use"].to_numpy()
    comm = b["community"].to_numpy()
    cent = shapely.point_on_surface(geoms)
    cxy = shapely.get_coordinates(cent)
    roads = d.roads.geometry.to_numpy()
    rtree = shapely.STRtree(roads)
    road_d = shapely.distance(cent, roads[rtree.query_nearest(cent, all_matches=False)[1]])
    used: set[int] = set()
    rows: list[tuple[str, str, str, int]] = []  # kind, name, community, building index

    for cid, cname, cpoly in zip(d.communities["id"], d.communities["name"], d.communities.geometry, strict=True):
        # buildings whose point on surface lies in the community (the loader assigns the same way)
        mine = np.flatnonzero(shapely.contains_xy(cpoly, cxy[:, 0], cxy[:, 1]))
        if not len(mine):
            continue
        centre = np.array(cpoly.centroid.coords[0])
        dist = np.hypot(*(cxy[mine] - centre).T)
        public = mine[use[mine] == "public"]
        pool = public if len(public) else mine
        st = int(pool[np.argmin(np.hypot(*(cxy[pool] - centre).T))])
        rows.append(("service_station", f"{cname}党群服务站", cid, st))
        used.add(st)
        near_road = [int(i) for i in mine[np.argsort(dist)] if i not in used and road_d[i] < 40]
        term = near_road[0] if near_road else int(mine[np.argsort(dist)][-1])
        rows.append(("service_terminal", f"{cname}便民服务终端", cid, term))
        used.add(term)

    school_main = [i for i in range(len(b)) if use[i] == "school" and str(b["name"].iat[i]).endswith("教学楼")]
    for i in school_main:
        rows.append(("school", str(b["name"].iat[i])[: -len("教学楼")], comm[i], i))
        used.add(i)

    pools = {
        "elderly_care": np.flatnonzero(np.isin(use, ["residential", "public"])),
        "clinic": np.flatnonzero(np.isin(use, ["commercial", "public", "office"]) & (road_d < 60)),
        "police": np.flatnonzero(np.isin(use, ["public", "office"]) & (road_d < 60)),
        "convenience_store": np.flatnonzero((use == "commercial") & (road_d < 60)),
    }
    spacing = {"elderly_care": 500.0, "clinic": 450.0, "police": 700.0, "convenience_store": 160.0}
    for kind, n in COUNTS.items():
        pool = np.array([i for i in pools[kind] if i not in used], dtype=int)
        if not len(pool):
            continue
        for k, j in enumerate(_spread(rng, cxy[pool], n, spacing[kind])):
            i = int(pool[j])
            used.add(i)
            cname = d.communities.set_index("id")["name"].get(comm[i], "解放")
            name = {
                "elderly_care": f"{ELDERLY_NAMES[k % len(ELDERLY_NAMES)]}养老院",
                "clinic": f"{cname}卫生服务站",
                "police": f"解放街道第{k + 1}警务室",
                "convenience_store": f"{STORE_BRANDS[k % len(STORE_BRANDS)]}便利店({k + 1}号店)",
            }[kind]
            rows.append((kind, name, comm[i], i))

    pts = [_entrance(geoms[i], rtree, roads) if kind in ("service_terminal", "convenience_store", "clinic", "police")
           else cent[i] for kind, _, _, i in rows]
    prefix = {"service_station": "FS", "service_terminal": "FT", "elderly_care": "FE", "clinic": "FC",
              "school": "FX", "police": "FP", "convenience_store": "FK"}
    counters: dict[str, int] = {}
    ids = []
    for kind, _, _, _ in rows:
        counters[kind] = counters.get(kind, 0) + 1
        ids.append(f"{prefix[kind]}{counters[kind]:03d}")
    d.extras["facilities"] = gpd.GeoDataFrame(
        {
            "id": ids,
            "kind": [r[0] for r in rows],
            "name": [r[1] for r in rows],
            "community": [r[2] for r in rows],
            "building_id": [b["id"].iat[r[3]] for r in rows],
        },
        geometry=round_geoms(np.array(pts, dtype=object)),
        crs=CRS_4548,
    )
