"""Management overlays: workers, cameras, checkpoints, geofences, population, events.

Patrol routes and GPS fixes (movement along the road graph) live in :mod:`data.generator.patrols`;
:func:`build` runs both in the fixed order the random streams depend on.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .common import CRS_4548, EVENTS_END, EVENTS_START, District, iso_local
from .names import person_names, phones
from .patrols import build_gps, build_routes, cum_length
from .roads import MAJOR

N_VEHICLES_MIN = 6
WORKERS_TARGET = 50
POPULATION = 70_000
EVENTS = 50_000
CATEGORIES = [
    "city_appearance",
    "street_order",
    "sanitation",
    "municipal_facilities",
    "greening",
    "illegal_construction",
    "safety_hazard",
    "dispute",
]
CAT_P = np.array([0.2, 0.22, 0.2, 0.12, 0.06, 0.05, 0.08, 0.07])
DESCRIPTIONS = {
    "city_appearance": ["墙面乱张贴小广告", "店招破损", "乱涂写乱刻画", "户外广告牌破旧", "沿街晾晒衣物"],
    "street_order": ["占道经营", "店外经营", "流动摊贩聚集", "机动车乱停放", "非机动车乱停放"],
    "sanitation": ["垃圾未及时清运", "垃圾桶满溢", "路面油污", "积存垃圾渣土", "暴露垃圾"],
    "municipal_facilities": ["井盖缺失", "路灯不亮", "人行道板破损", "道路坑洼", "护栏损坏"],
    "greening": ["绿化带毁损", "树木倒伏", "绿地内堆放杂物", "行道树缺株"],
    "illegal_construction": ["违章搭建彩钢棚", "私自圈占公共绿地", "楼顶违建"],
    "safety_hazard": ["电线私拉乱接", "消防通道堵塞", "广告牌松动", "楼道堆放杂物"],
    "dispute": ["邻里噪音纠纷", "物业纠纷", "停车位纠纷", "漏水纠纷"],
}


# ------------------------------------------------------------------------------ workers, grids
def build_workers(rng: np.random.Generator, d: District) -> None:
    cells = d.grid_cells
    comm_ids = cells["community_id"].to_numpy()
    assign = np.empty(len(cells), dtype=int)
    w = 0
    group_of_worker: list[list[int]] = []
    for cid in pd.unique(comm_ids):
        idx = np.flatnonzero(comm_ids == cid)
        k = max(1, int(round(len(idx) / 2.3)))
        for part in np.array_split(idx, k):
            assign[part] = w
            group_of_worker.append(list(part))
            w += 1
    n_grid = w
    n_veh = max(N_VEHICLES_MIN, WORKERS_TARGET - n_grid)
    n = n_grid + n_veh
    names = person_names(rng, n_grid) + [f"城管执法车{i + 1}号" for i in range(n_veh)]
    ids = [f"W{i + 1:03d}" for i in range(n)]
    ph = phones(rng, n)
    comms = d.communities
    veh_comms = np.array_split(np.arange(len(comms)), n_veh)
    grid_id = [cells["id"].iloc[g[0]] for g in group_of_worker]
    for vc in veh_comms:
        in_c = np.flatnonzero(np.isin(comm_ids, comms["id"].to_numpy()[vc]))
        grid_id.append(cells["id"].iloc[in_c[0]])
    d.workers = pd.DataFrame(
        {
            "id": ids,
            "name": names,
            "phone": ph,
            "kind": ["grid_worker"] * n_grid + ["vehicle"] * n_veh,
            "device_id": [f"D{i + 1:03d}" for i in range(n)],
            "grid_id": grid_id,
        }
    )
    cells = cells.copy()
    cells["staff_id"] = [ids[a] for a in assign]
    cells["staff_name"] = [names[a] for a in assign]
    cells["staff_phone"] = [ph[a] for a in assign]
    d.grid_cells = cells
    # patrol areas
    areas = [shapely.union_all(cells.geometry.values[g]) for g in group_of_worker]
    areas += [shapely.union_all(comms.geometry.values[vc]) for vc in veh_comms]
    d.extras["patrol_areas"] = [shapely.set_precision(shapely.make_valid(a), 0.01) for a in areas]


# ------------------------------------------------------------------------------ geofences etc.
def build_geofences(rng: np.random.Generator, d: District) -> None:
    w = d.workers
    rows = []
    for wid, name, area in zip(w["id"], w["name"], d.extras["patrol_areas"], strict=True):
        rows.append(
            {
                "name": f"{name}巡查区域",
                "kind": "patrol_area",
                "worker_id": wid,
                "max_dwell_min": np.nan,
                "geometry": area,
            }
        )
    # no-parking zones on the vehicles' loops (where the violations happen) and at school gates
    gf_on_route = {}
    for i, kind in enumerate(w["kind"]):
        if kind != "vehicle":
            continue
        route = d.extras["routes"][i]
        cum = cum_length(route)
        half = cum[-1] / 2
        picks = []
        for frac in (rng.uniform(0.15, 0.35), rng.uniform(0.55, 0.8)):
            s = frac * half
            x, y = np.interp(s, cum, route[:, 0]), np.interp(s, cum, route[:, 1])
            x2, y2 = np.interp(s + 2, cum, route[:, 0]), np.interp(s + 2, cum, route[:, 1])
            ang = np.arctan2(y2 - y, x2 - x)
            from .common import rect_polygons

            poly = rect_polygons([x], [y], [60.0], [30.0], [ang])[0]
            rows.append(
                {
                    "name": f"禁停区{len(rows) + 1}",
                    "kind": "no_parking",
                    "worker_id": None,
                    "max_dwell_min": 10.0,
                    "geometry": poly,
                }
            )
            picks.append(s)
        gf_on_route[i] = picks
    for blk in d.extras.get("schools", []) + d.extras.get("markets", []):
        p = blk.exterior.interpolate(rng.uniform(0, blk.exterior.length))
        rows.append(
            {
                "name": f"禁停区{len(rows) + 1}",
                "kind": "no_parking",
                "worker_id": None,
                "max_dwell_min": float(rng.choice([5.0, 10.0, 15.0])),
                "geometry": p.buffer(25, quad_segs=2),
            }
        )
    gf = gpd.GeoDataFrame(rows, geometry="geometry", crs=CRS_4548)
    gf["geometry"] = shapely.set_precision(gf.geometry.values, 0.01)
    gf.insert(0, "id", [f"GF{i + 1:03d}" for i in range(len(gf))])
    d.geofences = gf[["id", "name", "kind", "worker_id", "max_dwell_min", "geometry"]]
    d.extras["gf_on_route"] = gf_on_route


def build_checkpoints(rng: np.random.Generator, d: District) -> None:
    rows = []
    wid_index = {w: i for i, w in enumerate(d.workers["id"])}
    for gid, name, staff, cell in zip(
        d.grid_cells["id"], d.grid_cells["name"], d.grid_cells["staff_id"], d.grid_cells.geometry, strict=True
    ):
        route = d.extras["routes"][wid_index[staff]]
        inside = route[shapely.contains_xy(cell, route[:, 0], route[:, 1])]
        k = int(rng.integers(2, 5))
        if len(inside):
            pts = inside[rng.choice(len(inside), min(k, len(inside)), replace=False)]
        else:
            rp = cell.representative_point()
            pts = np.array([[rp.x, rp.y]])
        for j, p in enumerate(pts):
            rows.append(
                {
                    "name": f"{name}巡查点{j + 1}",
                    "grid_id": gid,
                    "radius_m": float(rng.choice([10.0, 15.0, 20.0])),
                    "geometry": shapely.Point(np.round(p, 2)),
                }
            )
    cp = gpd.GeoDataFrame(rows, geometry="geometry", crs=CRS_4548)
    cp.insert(0, "id", [f"CP{i + 1:03d}" for i in range(len(cp))])
    d.checkpoints = cp


def build_cameras(rng: np.random.Generator, d: District) -> None:
    from .furniture import _along, _clear

    roads = d.roads
    xy1, _, r1, az1 = _along(rng, roads[roads["class"].isin(MAJOR)], 180, 240, 1.0, stagger=True)
    xy2, _, r2, az2 = _along(
        rng, roads[roads["class"].isin(["tertiary", "residential"])], 260, 340, 0.8, sides=(1.0,)
    )
    xy = np.vstack([xy1, xy2])
    az = np.concatenate([az1, az2])
    ok = _clear(d, xy, 0.5)
    xy, az = xy[ok], az[ok]
    if len(xy) > 560:
        sel = np.sort(rng.choice(len(xy), 560, replace=False))
        xy, az = xy[sel], az[sel]
    n = len(xy)
    heading = np.round(np.mod(az + rng.choice([0.0, 180.0], n) + rng.normal(0, 10, n), 360), 1)
    rtree = shapely.STRtree(roads.geometry.values)
    near = rtree.query_nearest(shapely.points(xy), all_matches=False)[1]
    rn = roads["name"].to_numpy()[near]
    counter: dict[str, int] = {}
    names = []
    for r in rn:
        counter[r] = counter.get(r, 0) + 1
        names.append(f"{r}{counter[r]}号监控")
    # two high-altitude cameras on the two tallest buildings
    b = d.buildings
    hgt = d.extras["building_height"]
    top = np.argsort(-hgt, kind="stable")[:2]
    hc = shapely.get_coordinates(shapely.centroid(b.geometry.values[top]))
    kinds = ["street"] * n + ["high_altitude"] * 2
    allxy = np.vstack([xy, hc])
    mount = np.concatenate([np.round(rng.uniform(4.5, 9.0, n), 1), np.round(hgt[top] + 3.0, 1)])
    df = gpd.GeoDataFrame(
        {
            "name": names + [f"高空瞭望{i + 1}号({b['name'].iloc[t]})" for i, t in enumerate(top)],
            "kind": kinds,
            "mount_height": mount,
            "heading": np.concatenate([heading, [0.0, 0.0]]),
            "pitch": np.concatenate([np.round(rng.uniform(-35, -10, n), 1), [-8.0, -8.0]]),
            "hfov": np.concatenate([np.round(rng.uniform(50, 100, n), 1), [360.0, 360.0]]),
            "range_m": np.concatenate([np.round(rng.uniform(60, 200, n), 0), [3000.0, 3000.0]]),
        },
        geometry=shapely.points(np.round(allxy, 2)),
        crs=CRS_4548,
    )
    ids = [f"CAM{i + 1:04d}" for i in range(len(df))]
    df.insert(0, "id", ids)
    df["stream_url"] = [
        f"rtsp://10.86.{(i // 250) + 1}.{(i % 250) + 1}:554/live/{c}" for i, c in enumerate(ids)
    ]
    df["status"] = np.where(rng.random(len(df)) < 0.93, "online", "offline")
    df.loc[df["kind"] == "high_altitude", "status"] = "online"
    d.cameras = df[
        [
            "id",
            "name",
            "kind",
            "mount_height",
            "heading",
            "pitch",
            "hfov",
            "range_m",
            "stream_url",
            "status",
            "geometry",
        ]
    ]


# ------------------------------------------------------------------------------ population
def build_population(rng: np.random.Generator, d: District, total: int = POPULATION) -> None:
    b = d.buildings
    res = np.flatnonzero(np.isin(b["use"].to_numpy(), ["residential", "courtyard_house"]))
    floors = d.extras["building_floors"][res].astype(int)
    area = shapely.area(b.geometry.values[res])
    fa = area * floors
    counts = rng.multinomial(total, fa / fa.sum())
    bi = np.repeat(np.arange(len(res)), counts)
    n = len(bi)
    units = np.maximum(1, np.round(area / 180)).astype(int)
    unit = (rng.random(n) * units[bi]).astype(int) + 1
    floor = (rng.random(n) * floors[bi]).astype(int) + 1
    ages = np.arange(0, 101)
    w = np.interp(
        ages,
        [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
        [0.8, 1.0, 0.9, 1.3, 1.3, 1.4, 1.3, 1.0, 0.5, 0.15, 0.01],
    )
    age = rng.choice(ages, n, p=w / w.sum())
    birth = 2026 - age
    sex = np.where(rng.random(n) < 0.505, "M", "F")
    floating = rng.random(n) < np.where((age >= 18) & (age <= 45), 0.32, 0.08)
    flags = {
        "disabled": rng.random(n) < 0.025,
        "low_income": rng.random(n) < 0.02,
        "living_alone": rng.random(n) < np.where(age >= 65, 0.12, 0.01),
        "mental_health": rng.random(n) < 0.005,
        "community_correction": (rng.random(n) < 0.002) & (age >= 18),
    }
    care = np.full(n, "", dtype=object)
    for k, m in flags.items():
        care = np.where(m, np.where(care == "", k, care + ";" + k), care)
    d.population = pd.DataFrame(
        {
            "person_id": [f"P{i + 1:07d}" for i in range(n)],
            "building_id": b["id"].to_numpy()[res][bi],
            "unit": unit,
            "floor": floor,
            "birth_year": birth,
            "sex": sex,
            "residence": np.where(floating, "floating", "registered"),
            "care_flags": care,
        }
    )


# ------------------------------------------------------------------------------ events
def build_events(rng: np.random.Generator, d: District, total: int = EVENTS) -> None:
    m = int(total * 1.35)
    roads = d.roads
    lens = roads.length.to_numpy()
    ri = rng.choice(len(roads), m, p=lens / lens.sum())
    base = shapely.get_coordinates(
        shapely.line_interpolate_point(roads.geometry.values[ri], rng.random(m), normalized=True)
    )
    xy = base + rng.normal(0, 9, (m, 2))
    hot = d.extras.get("markets", []) + d.extras.get("schools", [])
    hot_xy = np.array([[p.centroid.x, p.centroid.y] for p in hot]) if hot else np.empty((0, 2))
    is_hot = rng.random(m) < (0.3 if len(hot_xy) else 0.0)
    if len(hot_xy):
        hi = rng.integers(0, len(hot_xy), m)
        xy = np.where(is_hot[:, None], hot_xy[hi] + rng.normal(0, 45, (m, 2)), xy)
    ok = shapely.contains_xy(d.land, xy[:, 0], xy[:, 1])
    xy, is_hot, ri = xy[ok][:total], is_hot[ok][:total], ri[ok][:total]
    n = len(xy)
    cat = rng.choice(CATEGORIES, n, p=CAT_P)
    hot_cat = rng.choice(
        ["street_order", "sanitation", "city_appearance", "safety_hazard"], n, p=[0.4, 0.3, 0.2, 0.1]
    )
    cat = np.where(is_hot, hot_cat, cat)
    prio = rng.choice(list("ABCD"), n, p=[0.06, 0.2, 0.5, 0.24])
    source = rng.choice(["grid_worker", "resident", "camera"], n, p=[0.55, 0.3, 0.15])
    # reporting time: uniform day, busier daytime
    span_s = int((EVENTS_END - EVENTS_START) / np.timedelta64(1, "s"))
    days = rng.integers(0, span_s // 86400, n)
    hw = np.array([1, 0.5, 0.3, 0.3, 0.4, 0.8, 2, 4, 7, 8, 8, 7, 5, 6, 7, 7, 7, 6, 5, 4, 3, 2, 1.5, 1.2])
    hour = rng.choice(24, n, p=hw / hw.sum())
    sec = days * 86400 + hour * 3600 + rng.integers(0, 3600, n)
    order = np.argsort(sec, kind="stable")
    xy, cat, prio, source, sec, ri = xy[order], cat[order], prio[order], source[order], sec[order], ri[order]
    # lifecycle durations (s): accept, dispatch, handle, verify, close
    fast = np.where(prio == "A", 0.4, np.where(prio == "B", 0.7, 1.0))
    med = [20 * 60, 40 * 60, 6 * 3600, 3 * 3600, 3600]
    steps = np.stack(
        [np.maximum(60, rng.lognormal(np.log(mu), 0.8, n) * fast).astype(np.int64) for mu in med], 1
    )
    t_rep = EVENTS_START + sec.astype("timedelta64[s]")
    cum = np.cumsum(steps, axis=1)
    stamps = t_rep[:, None] + cum.astype("timedelta64[s]")  # accepted..closed
    rejected = rng.random(n) < 0.04
    t_rej = t_rep + np.maximum(600, rng.lognormal(np.log(3600), 0.7, n)).astype("timedelta64[s]")
    # stuck (overdue) events stop at a random stage: 1 accepted, 2 dispatched, 3 handled
    stuck = (rng.random(n) < 0.015) & ~rejected
    stop_at = np.where(stuck, rng.integers(1, 4, n), 5)
    reached = (stamps <= EVENTS_END) & (np.arange(5)[None, :] < stop_at[:, None]) & ~rejected[:, None]
    reached = np.cumprod(reached, axis=1).astype(bool)
    stamps = np.where(reached, stamps, np.datetime64("NaT"))
    t_rej = np.where(rejected & (t_rej <= EVENTS_END), t_rej, np.datetime64("NaT"))
    nreach = reached.sum(axis=1)
    status_names = np.array(
        ["reported", "accepted", "dispatched", "handled", "verified", "closed"], dtype=object
    )
    status = status_names[nreach]
    status = np.where(~np.isnat(t_rej), "rejected", status)
    # worker: the grid worker of the cell holding the event, once dispatched
    cells = d.grid_cells
    ci = shapely.STRtree(cells.geometry.values).query_nearest(shapely.points(xy), all_matches=False)[1]
    worker = np.where(reached[:, 1], cells["staff_id"].to_numpy()[ci], "")
    rn = roads["name"].to_numpy()[ri]
    pick = rng.random(n)
    desc = [
        f"{r or '小区'}附近{DESCRIPTIONS[c][int(p * len(DESCRIPTIONS[c]))]}"
        for r, c, p in zip(rn, cat, pick, strict=True)
    ]
    d.events = pd.DataFrame(
        {
            "id": [f"E{i + 1:07d}" for i in range(n)],
            "category": cat,
            "priority": prio,
            "source": source,
            "description": desc,
            "x": np.round(xy[:, 0], 2),
            "y": np.round(xy[:, 1], 2),
            "status": status,
            "worker_id": worker,
            "reported_at": iso_local(t_rep),
            "accepted_at": iso_local(stamps[:, 0]),
            "dispatched_at": iso_local(stamps[:, 1]),
            "handled_at": iso_local(stamps[:, 2]),
            "verified_at": iso_local(stamps[:, 3]),
            "closed_at": iso_local(stamps[:, 4]),
            "rejected_at": iso_local(t_rej),
        }
    )


def build(rng: np.random.Generator, d: District) -> None:
    build_workers(rng, d)
    build_routes(rng, d)
    build_geofences(rng, d)
    build_checkpoints(rng, d)
    build_cameras(rng, d)
    build_population(rng, d)
    build_events(rng, d)
    build_gps(rng, d)
