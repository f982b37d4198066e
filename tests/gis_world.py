"""A tiny hand-made district (400 m x 400 m) in the sample-delivery format, for the PostGIS tests.

Coordinates are written relative to an origin near Jiefang Street in EPSG:4548 so every number
in the tests is easy to check by hand. ``write_delivery(dir, defects=True)`` adds rows that the
loaders must reject (each listed in ``EXPECTED_REJECTS``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

X0, Y0 = 536_600.0, 3_644_000.0  # EPSG:4548, ~117.39E 32.93N
TO_LONLAT = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True)
DAY = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # 08:00 local on 2026-03-02


def xy(x: float, y: float) -> tuple[float, float]:
    return X0 + x, Y0 + y


def box(x1: float, y1: float, x2: float, y2: float) -> shapely.Polygon:
    return shapely.box(X0 + x1, Y0 + y1, X0 + x2, Y0 + y2)


def lonlat(x: float, y: float) -> tuple[float, float]:
    lon, lat = TO_LONLAT.transform(X0 + x, Y0 + y)
    return float(lon), float(lat)


def _gpkg(out: Path, name: str, rows: list[dict], geoms: list) -> None:
    gdf = gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4548")
    gdf.to_file(out / f"{name}.gpkg", layer=name, driver="GPKG", engine="pyogrio")


COMMUNITIES = {"C01": box(0, 0, 200, 400), "C02": box(200, 0, 400, 400)}
GRIDS = {
    "G001": (box(0, 0, 200, 200), "C01", "W001"),
    "G002": (box(200, 0, 400, 200), "C02", "W002"),
    "G003": (box(0, 200, 200, 400), "C01", None),
    "G004": (box(200, 200, 400, 400), "C02", "W003"),
}
BUILDINGS = [
    # id, polygon, floors, height
    ("B000001", box(40, 40, 60, 60), 6, 20.0),
    ("B000002", box(120, 120, 150, 140), 6, None),
    ("B000003", box(250, 50, 280, 80), 4, 12.0),
    ("B000004", box(250, 250, 290, 290), 10, 30.0),
    ("B000005", box(60, 250, 80, 270), 3, 9.0),
]
ROADS = [("R0001", [(0, 100), (400, 100)]), ("R0002", [(300, 0), (300, 400)])]
WORKERS = [
    ("W001", "张伟", "grid_worker", "D001", "G001"),
    ("W002", "李娜", "grid_worker", "D002", "G002"),
    ("W003", "巡逻车1", "vehicle", "D003", "G004"),
]
CAMERAS = [
    # id, x, y, kind, mount, heading, hfov, range, status
    ("CAM0001", 100, 10, "street", 6.0, 0.0, 60.0, 150.0, "online"),
    ("CAM0002", 390, 390, "street", 8.0, 225.0, 90.0, 200.0, "offline"),
    ("CAM0003", 200, 200, "high_altitude", 120.0, 0.0, 360.0, 2000.0, "online"),
]
CHECKPOINTS = [
    ("CP001", 100, 100, "G001", 15.0),
    ("CP002", 300, 150, "G002", 15.0),
    ("CP003", 20, 180, "G001", 10.0),
]
GEOFENCES = [
    ("GF001", "patrol_area", "W001", None, box(0, 0, 200, 200)),
    ("GF002", "no_parking", None, 10.0, box(320, 320, 360, 360)),
]


def events_rows() -> list[dict]:
    t = DAY - timedelta(days=1)

    def iso(dt: datetime | None) -> str:
        return "" if dt is None else dt.astimezone(UTC).isoformat().replace("+00:00", "Z")

    rows = []
    spec = [  # id, cat, prio, x, y, status, worker, hours of each reached step
        ("E0000001", "sanitation", "A", 50, 50, "closed", "W001", [0, 1, 2, 5, 6, 7]),
        ("E0000002", "street_order", "B", 130, 130, "dispatched", "W001", [0, 1, 2]),
        ("E0000003", "safety_hazard", "A", 260, 60, "reported", None, [0]),
        ("E0000004", "greening", "C", 300, 300, "accepted", None, [0, 3]),
        ("E0000005", "dispute", "D", 20, 380, "rejected", None, [0, None, None, None, None, None, 2]),
        ("E0000006", "sanitation", "B", 350, 150, "handled", "W002", [0, 1, 2, 30]),
        ("E0000007", "sanitation", "A", 55, 45, "verified", "W001", [0, 1, 1.5, 3, 4]),
    ]
    cols = [
        "reported_at",
        "accepted_at",
        "dispatched_at",
        "handled_at",
        "verified_at",
        "closed_at",
        "rejected_at",
    ]
    for eid, cat, prio, x, y, status, worker, hours in spec:
        row = {
            "id": eid,
            "category": cat,
            "priority": prio,
            "source": "grid_worker",
            "description": "测试",
            "x": X0 + x,
            "y": Y0 + y,
            "status": status,
            "worker_id": worker or "",
        }
        for i, c in enumerate(cols):
            h = hours[i] if i < len(hours) else None
            row[c] = iso(None if h is None else t + timedelta(hours=h))
        rows.append(row)
    return rows


def population_rows() -> list[dict]:
    rows = []
    n = 0

    def add(building: str, birth_year: int, residence: str, flags: str = "") -> None:
        nonlocal n
        n += 1
        rows.append(
            {
                "person_id": f"P{n:07d}",
                "building_id": building,
                "unit": 1,
                "floor": 1 + n % 5,
                "birth_year": birth_year,
                "sex": "MF"[n % 2],
                "residence": residence,
                "care_flags": flags,
            }
        )

    this_year = datetime.now(UTC).year
    # B000001: 12 people: 7 registered, 5 floating; 6 aged 60+ (2 of them 80+), 5 children, 1 care
    for i in range(7):
        add("B000001", this_year - (65 if i < 4 else 30), "registered", "living_alone" if i == 0 else "")
    for i in range(5):
        add("B000001", this_year - (85 if i < 2 else 5), "floating")
    # B000002: 3 people (all suppressed)
    for _ in range(3):
        add("B000002", this_year - 40, "registered")
    # B000004: 7 people: 6 registered, 1 floating
    for i in range(7):
        add(
            "B000004",
            this_year - 20,
            "registered" if i < 6 else "floating",
            "disabled;low_income" if i < 5 else "",
        )
    return rows


def gps_rows() -> list[dict]:
    """W001 walks y=100 from x=20 east (1 m/s, a fix every 5 s) with one spike, stands still with
    jitter, then walks out of its patrol area (x > 200) and stays out; W003 parks 15 min in the
    no-parking zone; W002 has two fixes."""
    rows: list[dict] = []

    def add(dev: str, worker: str, t: datetime, x: float, y: float, speed: float, acc: float) -> None:
        lon, lat = lonlat(x, y)
        rows.append(
            {
                "device_id": dev,
                "worker_id": worker,
                "t": t,
                "lon": lon,
                "lat": lat,
                "speed": speed,
                "accuracy": acc,
            }
        )

    t = DAY
    for k in range(33):  # x = 20 .. 180
        x = 20 + 5 * k
        if k == 10:
            add("D001", "W001", t, x + 500, 100, 1.0, 4.0)  # spike
        else:
            add("D001", "W001", t, x, 100, 1.0, 4.0)
        t += timedelta(seconds=5)
    rng = np.random.default_rng(1)
    for _ in range(24):  # stand at (180, 100) with +-1.5 m jitter (accuracy 5 m)
        dx, dy = rng.uniform(-1.5, 1.5, 2)
        add("D001", "W001", t, 180 + dx, 100 + dy, 0.0, 5.0)
        t += timedelta(seconds=5)
    for k in range(1, 17):  # walk to x = 260
        add("D001", "W001", t, 180 + 5 * k, 100, 1.0, 4.0)
        t += timedelta(seconds=5)
    for _ in range(36):  # stay outside 3 min
        add("D001", "W001", t, 260, 100, 0.0, 5.0)
        t += timedelta(seconds=5)
    t = DAY + timedelta(hours=1)
    for _ in range(31):  # W003 parked 15 min at (340, 340)
        add("D003", "W003", t, 340, 340, 0.0, 3.0)
        t += timedelta(seconds=30)
    add("D002", "W002", DAY + timedelta(hours=2), 300, 150, 0.5, 4.0)
    add("D002", "W002", DAY + timedelta(hours=2, seconds=10), 300, 152, 0.5, 4.0)
    return rows


#: (layer, row, reason) the loaders must report for write_delivery(defects=True)
EXPECTED_REJECTS = {
    ("buildings", "B000007", "absurd_height"),
    ("buildings", "B000008", "duplicate"),
    ("buildings", "B000009", "unparsable_value"),
    ("events", "E0000008", "unknown_value"),
    ("events", "E0000009", "inconsistent_lifecycle"),
    ("events", "E0000010", "unparsable_value"),
    ("population", "P9000001", "unknown_reference"),
    ("population", "P9000002", "absurd_value"),
    ("gps_fixes", "D999", "unknown_reference"),
    ("gps_fixes", "D001", "duplicate"),
    ("gps_fixes", "D002", "missing_value"),
}


def write_delivery(root: Path, defects: bool = False) -> Path:
    """Write ``root/clean/*`` and return ``root``."""
    out = Path(root) / "clean"
    out.mkdir(parents=True, exist_ok=True)
    _gpkg(
        out,
        "boundary",
        [{"name": "解放街道", "name_en": "Jiefang Street", "area_m2": 160000.0}],
        [box(0, 0, 400, 400)],
    )
    _gpkg(
        out, "communities", [{"id": k, "name": f"{k}社区"} for k in COMMUNITIES], list(COMMUNITIES.values())
    )
    _gpkg(
        out,
        "grid_cells",
        [
            {
                "id": k,
                "name": f"网格{k}",
                "community_id": c,
                "staff_id": s,
                "staff_name": None,
                "staff_phone": None,
            }
            for k, (_, c, s) in GRIDS.items()
        ],
        [g for g, _, _ in GRIDS.values()],
    )
    brows = [
        {
            "id": b,
            "name": f"楼{b[-2:]}",
            "floors": f,
            "height": h,
            "use": "residential",
            "roof_type": "flat",
            "community": "C01",
            "compound": None,
        }
        for b, _, f, h in BUILDINGS
    ]
    bgeoms = [g for _, g, _, _ in BUILDINGS]
    if defects:
        brows += [
            {**brows[0], "id": "B000007", "height": 900.0},
            {**brows[0], "id": "B000008"},
            {**brows[0], "id": "B000009", "height": "abc"},
        ]
        bgeoms += [box(300, 300, 310, 310), BUILDINGS[0][1], box(320, 20, 330, 30)]
        for r in brows:
            r["height"] = None if r["height"] is None else str(r["height"])
    _gpkg(out, "buildings", brows, bgeoms)
    _gpkg(
        out,
        "roads",
        [
            {
                "id": r,
                "name": f"路{r}",
                "class": "secondary",
                "width": 12.0,
                "lanes": 2,
                "bridge": 0,
                "deck_height": None,
            }
            for r, _ in ROADS
        ],
        [shapely.LineString([(X0 + x, Y0 + y) for x, y in pts]) for _, pts in ROADS],
    )
    pd.DataFrame(
        [
            {"id": w, "name": n, "phone": "13800000000", "kind": k, "device_id": d, "grid_id": g}
            for w, n, k, d, g in WORKERS
        ]
    ).to_csv(out / "workers.csv", index=False)
    _gpkg(
        out,
        "cameras",
        [
            {
                "id": c,
                "name": f"摄像头{c[-1]}",
                "kind": k,
                "mount_height": m,
                "heading": h,
                "pitch": -10.0,
                "hfov": f,
                "range_m": r,
                "stream_url": f"/media/{c}.mp4",
                "status": s,
            }
            for c, _, _, k, m, h, f, r, s in CAMERAS
        ],
        [shapely.Point(X0 + x, Y0 + y) for _, x, y, *_ in CAMERAS],
    )
    _gpkg(
        out,
        "checkpoints",
        [{"id": c, "name": f"点{c}", "grid_id": g, "radius_m": r} for c, _, _, g, r in CHECKPOINTS],
        [shapely.Point(X0 + x, Y0 + y) for _, x, y, _, _ in CHECKPOINTS],
    )
    _gpkg(
        out,
        "geofences",
        [{"id": i, "name": i, "kind": k, "worker_id": w, "max_dwell_min": m} for i, k, w, m, _ in GEOFENCES],
        [g for *_, g in GEOFENCES],
    )
    ev = events_rows()
    if defects:
        ev += [
            {**ev[2], "id": "E0000008", "category": "alien_invasion"},
            {**ev[0], "id": "E0000009", "closed_at": ""},
            {**ev[2], "id": "E0000010", "x": "abc"},
        ]
    pd.DataFrame(ev).to_csv(out / "events.csv", index=False)
    pop = population_rows()
    if defects:
        pop += [
            {**pop[0], "person_id": "P9000001", "building_id": "B999999"},
            {**pop[0], "person_id": "P9000002", "birth_year": 3000},
        ]
    pd.DataFrame(pop).to_csv(out / "population.csv", index=False)
    fixes = gps_rows()
    if defects:
        fixes += [
            {**fixes[0], "device_id": "D999", "worker_id": None},
            {**fixes[1]},
            {**fixes[-1], "t": fixes[-1]["t"] + timedelta(seconds=5), "lat": float("nan")},
        ]
    gps = pd.DataFrame(fixes)
    gps["t"] = pd.to_datetime(gps["t"], utc=True).dt.tz_localize(None)  # contract: naive UTC timestamps
    gps.to_parquet(out / "gps_fixes.parquet", index=False)
    return Path(root)
