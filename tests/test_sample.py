"""The sample-district generator against its file contract (docs/sample-delivery.md)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import geopandas as gpd
import laspy
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely

from pipelines.furniture import MAX_HEIGHT_M as MAX_FURNITURE_HEIGHT_M
from pipelines.vegetation import MAX_TREE_HEIGHT_M

REPO = Path(__file__).resolve().parent.parent
HASHED = ("*.gpkg", "*.tif", "*.csv", "gps_fixes/*.parquet", "*.las", "buildings_shp/*", "mesh/metadata.xml",
          "mesh/Data/*/*")
BUILDING_USES = {"residential", "commercial", "office", "school", "hospital", "market", "public", "industrial",
                 "courtyard_house"}
FURNITURE_TYPES = {"street_lamp", "traffic_signal", "sign", "bus_shelter", "bench", "waste_bin", "toilet", "kiosk",
                   "billboard", "fire_hydrant", "fitness", "sculpture"}
CATEGORIES = {"city_appearance", "street_order", "sanitation", "municipal_facilities", "greening", "burglary", "theft",
              "family_conflict",
              "illegal_construction", "safety_hazard", "dispute"}
LIFECYCLE = ["reported_at", "accepted_at", "dispatched_at", "handled_at", "verified_at", "closed_at"]
# measured: 430 MB at --scale 1 and 3 (buildings,roads); the old whole-city-in-memory writer grew with K²
RSS_BOUND_MB = 900
DEFECT_CODES = {"self_intersection", "zero_area", "duplicate", "missing_height", "absurd_height", "unparsable_value",
                "outside_boundary", "wrong_crs", "wrong_encoding"}


def _gpkg(root: Path, name: str) -> gpd.GeoDataFrame:
    return gpd.read_file(root / f"{name}.gpkg", layer=name)


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for pattern in HASHED:
        for p in sorted((root / "clean").glob(pattern)):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted((root / "dirty").rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def clean(sample_dir: Path) -> Path:
    return sample_dir / "clean"


def test_determinism(sample_dir: Path, tmp_path: Path) -> None:
    from data.generator import generate

    generate(tmp_path, seed=7, scale=1)
    first, second = _digests(sample_dir), _digests(tmp_path)
    assert any(k.endswith(".parquet") for k in first) and any(k.endswith(".tif") for k in first)
    assert first.keys() == second.keys()
    differ = [k for k in first if first[k] != second[k]]
    assert not differ, f"not byte-identical between two runs: {differ}"


def test_layers_one_per_file_and_crs(clean: Path) -> None:
    for p in sorted(clean.glob("*.gpkg")):
        layers = pyogrio.list_layers(p)
        assert [row[0] for row in layers] == [p.stem], p.name
        assert pyogrio.read_info(p)["crs"] == "EPSG:4548", p.name
    with rasterio.open(clean / "dem.tif") as ds:
        assert ds.crs.to_epsg() == 4548
        assert ds.res == (2.0, 2.0) and ds.dtypes[0] == "float32" and ds.nodata == -9999
        assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"
        z = ds.read(1)
        bounds = ds.bounds
    boundary = _gpkg(clean, "boundary").geometry.iloc[0]
    minx, miny, maxx, maxy = boundary.bounds
    assert bounds.left <= minx - 199 and bounds.right >= maxx + 199
    assert bounds.bottom <= miny - 199 and bounds.top >= maxy + 199
    # gentle land (≈ 19.5–40 m) and a lake bed a few metres below Longzi Lake's 17.6 m water level
    assert 19.0 < np.median(z) and np.percentile(z, 98) <= 40.0
    assert 12.0 < z.min() < 17.6 - 1.0
    with laspy.open(clean / "pointcloud.las") as f:
        assert f.header.version.minor == 4 and f.header.point_format.id == 7
        assert f.header.parse_crs().to_epsg() == 4548
        las = f.read()
    assert set(np.unique(las.classification)) == {2, 5, 6}
    assert las.x.max() - las.x.min() < 320 and las.y.max() - las.y.min() < 320
    assert las.red.max() > 0


def test_boundary_area(clean: Path) -> None:
    b = _gpkg(clean, "boundary")
    assert len(b) == 1 and b["name"].iloc[0] == "解放街道"
    assert b.geometry.iloc[0].area == pytest.approx(4.61e6, rel=0.01)
    assert b["area_m2"].iloc[0] == pytest.approx(4.61e6, rel=0.01)
    lon, lat = gpd.GeoSeries([b.geometry.iloc[0].centroid], crs=4548).to_crs(4490).iloc[0].coords[0]
    assert lon == pytest.approx(117.39, abs=0.02) and lat == pytest.approx(32.93, abs=0.02)


def test_volumes(clean: Path) -> None:
    assert 15 <= len(_gpkg(clean, "communities")) <= 25
    assert 60 <= len(_gpkg(clean, "grid_cells")) <= 120
    assert 3000 <= len(_gpkg(clean, "buildings")) <= 6000
    assert 60e3 <= _gpkg(clean, "roads").length.sum() <= 120e3
    assert len(_gpkg(clean, "trees")) >= 15000
    assert len(_gpkg(clean, "furniture")) >= 8000
    assert 60 <= len(_gpkg(clean, "facilities")) <= 160
    cams = _gpkg(clean, "cameras")
    assert 300 <= len(cams) <= 600 and (cams["kind"] == "high_altitude").sum() == 2
    assert 40 <= len(pd.read_csv(clean / "workers.csv")) <= 60
    assert 66_000 <= len(pd.read_csv(clean / "population.csv")) <= 74_000
    assert 45_000 <= len(pd.read_csv(clean / "events.csv")) <= 55_000
    assert len(pd.read_csv(clean / "surveys.csv")) == 20 * 5 * 4  # communities x quarters x topics
    assert 400 <= len(pd.read_csv(clean / "care_households.csv")) <= 800
    assert len(pd.read_csv(clean / "care_visits.csv")) >= 3000
    assert pd.read_parquet(clean / "gps_fixes", columns=["speed"]).shape[0] >= 1_000_000
    # one Parquet file per UTC month, each holding only its month
    months = sorted(clean.glob("gps_fixes/*.parquet"))
    assert months and all(re.fullmatch(r"\d{4}-\d{2}\.parquet", p.name) for p in months)
    for p in months:
        t = pd.read_parquet(p, columns=["t"])["t"]
        assert (t.dt.strftime("%Y-%m") == p.stem).all(), p.name
    readme = (clean / "README.txt").read_text(encoding="utf-8")
    assert "seed: 7" in readme and "scale: 1" in readme and "buildings.gpkg" in readme


def test_buildings(clean: Path) -> None:
    b = _gpkg(clean, "buildings")
    assert b["id"].is_unique and b["id"].str.fullmatch(r"B\d{6}").all()
    assert set(b["use"]) == BUILDING_USES - {"public"} or set(b["use"]) <= BUILDING_USES
    assert {"residential", "commercial", "school", "hospital", "market", "courtyard_house"} <= set(b["use"])
    assert set(b["roof_type"].dropna()) <= {"flat", "gable", "hip"}
    assert 0.12 < b["roof_type"].isna().mean() < 0.28
    assert 0.04 < b["height"].isna().mean() < 0.12
    assert not (b["height"].isna() & b["floors"].isna()).any()
    assert b["name"].notna().all() and b["community"].notna().all()
    ok = b["height"].notna() & b["floors"].notna()
    per_floor = b.loc[ok, "height"] / b.loc[ok, "floors"]
    assert per_floor.between(2.5, 8.0).all()  # 2.6 m old single-storey houses … 7 m market halls
    assert per_floor[b.loc[ok, "use"] == "residential"].median() == pytest.approx(3.1, abs=0.2)
    res = b[b["use"] == "residential"]
    assert res["floors"].max() >= 18 and ((res["floors"] >= 6) & (res["floors"] <= 7)).sum() > 100
    assert b.geometry.is_valid.all() and (b.geometry.geom_type == "Polygon").all()
    comm = _gpkg(clean, "communities")
    assert set(b["community"]) <= set(comm["id"])
    geoms = b.geometry.values
    a, c = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = a < c
    overlap = shapely.area(shapely.intersection(geoms[a[pairs]], geoms[c[pairs]]))
    assert (overlap < 0.01).all(), "overlapping buildings"
    # off road corridors and water
    roads = _gpkg(clean, "roads")
    cw = shapely.buffer(roads.geometry.values, roads["width"].to_numpy() / 2, cap_style="flat")
    assert len(shapely.STRtree(cw).query(geoms, predicate="intersects")[0]) == 0
    water = _gpkg(clean, "water")
    assert not shapely.intersects(shapely.union_all(water.geometry.values), geoms).any()


def test_buildings_shapefile_via_mapping(clean: Path) -> None:
    from core.delivery.mapping import load_mapping
    from core.delivery.read import read_layer
    from pipelines.buildings import BUILDING_SPECS

    shp = clean / "buildings_shp" / "buildings.shp"
    assert (clean / "buildings_shp" / "buildings.cpg").read_text() == "GBK"
    raw = gpd.read_file(shp, encoding="GBK")
    assert list(raw.columns[:7]) == ["BH", "MC", "CS", "JZGD", "YT", "WDLX", "SQ"]
    assert raw["MC"].str.contains("[\u4e00-\u9fff]").all()
    mapping = load_mapping(REPO / "data" / "mappings" / "buildings_shp.yaml")
    assert mapping.encoding == "GBK"
    layer = read_layer(shp, BUILDING_SPECS, layer_name="buildings", mapping=mapping)
    gpkg = _gpkg(clean, "buildings").set_index("id")
    got = layer.gdf.set_index("id")
    assert len(got) == len(gpkg)
    assert (got["use"] == gpkg.loc[got.index, "use"]).all()
    assert (got["roof_type"].fillna("") == gpkg.loc[got.index, "roof_type"].fillna("")).all()
    assert (got["name"] == gpkg.loc[got.index, "name"]).all()


def test_roads_trees_green_water(clean: Path) -> None:
    r = _gpkg(clean, "roads")
    assert r["id"].is_unique and set(r["class"]) == {"primary", "secondary", "tertiary", "residential", "service"}
    assert r.loc[r["bridge"] == 1, "deck_height"].notna().all() and r.loc[r["bridge"] == 0, "deck_height"].isna().all()
    t = _gpkg(clean, "trees")
    assert t["id"].is_unique and set(t["setting"]) == {"street", "park", "courtyard"}
    assert t["height"].between(2, 30).all() and t["crown_diameter"].between(1, 20).all()
    b = _gpkg(clean, "buildings")
    assert len(shapely.STRtree(b.geometry.values).query(t.geometry.values, predicate="intersects")[0]) == 0
    g = _gpkg(clean, "green")
    assert set(g["kind"]) == {"park", "green_space", "courtyard", "separator"} and g["id"].is_unique
    w = _gpkg(clean, "water")
    assert set(w["kind"]) == {"lake", "river"} and w["water_level"].between(15, 20).all()


def test_facilities(clean: Path) -> None:
    f = _gpkg(clean, "facilities")
    c = _gpkg(clean, "communities")
    assert f["id"].is_unique and f["name"].notna().all()
    kinds = f["kind"].value_counts().to_dict()
    assert set(kinds) == {"service_station", "service_terminal", "elderly_care", "clinic", "school", "police",
                          "convenience_store"}
    # one service station and one terminal per community (the plan's "20 terminals, every community")
    for kind in ("service_station", "service_terminal"):
        assert sorted(f.loc[f["kind"] == kind, "community"]) == sorted(c["id"])
    b = _gpkg(clean, "buildings").set_index("id")
    assert set(f["building_id"]) <= set(b.index)
    # every facility lies on its building's site
    assert all(shapely.intersects(b.geometry[bid], g) for bid, g in zip(f["building_id"], f.geometry, strict=True))
    # no digits runs that look like phone/ID numbers in the names
    assert not f["name"].str.contains(r"\d{6,}").any()


def test_furniture(clean: Path) -> None:
    f = _gpkg(clean, "furniture")
    assert f["id"].is_unique and set(f["type"]) == FURNITURE_TYPES
    sc = f[f["type"] == "sculpture"]
    assert len(sc) == 3 and (sc["height"] > 2.5).all() and sc["name"].notna().all()
    assert f.loc[f["type"] != "sculpture", "name"].isna().all()
    assert f["heading"].between(0, 360).all()
    pts = f.geometry.values
    b = _gpkg(clean, "buildings")
    assert len(shapely.STRtree(b.geometry.values).query(pts, predicate="intersects")[0]) == 0
    r = _gpkg(clean, "roads")
    cw = shapely.buffer(r.geometry.values, r["width"].to_numpy() / 2, cap_style="flat")
    assert len(shapely.STRtree(cw).query(pts, predicate="intersects")[0]) == 0
    assert set(f["road_id"].dropna()) <= set(r["id"])
    # signals face their approach: heading points from the intersection out along a road
    sig = f[f["type"] == "traffic_signal"]
    assert len(sig) >= 8
    # bus shelters parallel to their road
    bs = f[f["type"] == "bus_shelter"].merge(r[["id", "geometry"]].rename(columns={"id": "road_id",
                                                                                   "geometry": "rg"}), on="road_id")
    assert len(bs) >= 10
    for p, h, line in zip(bs.geometry, bs["heading"], bs["rg"], strict=True):
        s = line.project(p)
        a, c = line.interpolate(max(s - 2, 0)), line.interpolate(min(s + 2, line.length))
        az = np.degrees(np.arctan2(c.x - a.x, c.y - a.y)) % 180
        diff = abs(((h % 180) - az + 90) % 180 - 90)
        assert diff < 20


def test_overlays(clean: Path) -> None:
    workers = pd.read_csv(clean / "workers.csv", dtype=str)
    cells = _gpkg(clean, "grid_cells")
    assert set(workers["kind"]) == {"grid_worker", "vehicle"} and workers["device_id"].is_unique
    assert set(cells["staff_id"]) <= set(workers["id"]) and set(workers["grid_id"]) <= set(cells["id"])
    gf = _gpkg(clean, "geofences")
    patrol = gf[gf["kind"] == "patrol_area"]
    assert set(patrol["worker_id"]) == set(workers["id"])
    assert gf.loc[gf["kind"] == "no_parking", "max_dwell_min"].gt(0).all()
    cp = _gpkg(clean, "checkpoints")
    assert set(cp["grid_id"]) <= set(cells["id"]) and cp["id"].is_unique
    pop = pd.read_csv(clean / "population.csv", dtype={"care_flags": str})
    b = _gpkg(clean, "buildings").set_index("id")
    assert pop["person_id"].is_unique
    assert set(b.loc[pop["building_id"].unique(), "use"]) == {"residential", "courtyard_house"}
    flags = set(";".join(pop["care_flags"].dropna()).split(";")) - {""}
    assert flags == {"disabled", "low_income", "living_alone", "mental_health", "community_correction"}
    assert set(pop["sex"]) == {"M", "F"} and set(pop["residence"]) == {"registered", "floating"}


def test_events_lifecycle(clean: Path) -> None:
    ev = pd.read_csv(clean / "events.csv", dtype=str, keep_default_na=False)
    assert ev["id"].is_unique and set(ev["category"]) == CATEGORIES
    assert set(ev["priority"]) == set("ABCD")
    assert ev["reported_at"].str.endswith("+08:00").all()
    t = {c: pd.to_datetime(ev[c].replace("", None), format="ISO8601", utc=True) for c in LIFECYCLE + ["rejected_at"]}
    assert t["reported_at"].min() >= pd.Timestamp("2025-11-01T00:00+08:00")
    assert t["reported_at"].max() < pd.Timestamp("2026-11-01T00:00+08:00")
    reached = np.column_stack([t[c].notna().to_numpy() for c in LIFECYCLE])
    # reached steps are a prefix, strictly increasing in time
    assert (np.diff(reached.astype(int), axis=1) <= 0).all()
    for a, b in zip(LIFECYCLE[:-1], LIFECYCLE[1:], strict=True):
        both = t[a].notna() & t[b].notna()
        assert (t[b][both] > t[a][both]).all()
    names = np.array(["reported", "accepted", "dispatched", "handled", "verified", "closed"])
    expect = names[reached.sum(axis=1) - 1]
    rej = t["rejected_at"].notna().to_numpy()
    assert (ev["status"].to_numpy()[~rej] == expect[~rej]).all() and (ev["status"][rej] == "rejected").all()
    assert ((ev["worker_id"] != "") == t["dispatched_at"].notna()).all()
    open_ = ~ev["status"].isin(["closed", "rejected"])
    overdue = open_ & (t["reported_at"] < pd.Timestamp("2026-10-01T00:00+08:00"))
    assert open_.sum() > 100 and overdue.sum() > 50
    # hotspots: events cluster (the densest 1% of 100 m cells hold far more than 1%)
    cell = (ev["x"].astype(float) // 100).astype(int).astype(str) + "_" + (ev["y"].astype(float) // 100).astype(
        int).astype(str)
    top = cell.value_counts()
    assert top.iloc[: max(1, len(top) // 100)].sum() > 0.03 * len(ev)


def test_civil(clean: Path) -> None:
    """Surveys, care households and visits (issue 16): plausible, no personal data, some
    communities on track and some off for data/targets/jiefang.yaml."""
    comm = set(_gpkg(clean, "communities")["id"])
    s = pd.read_csv(clean / "surveys.csv", dtype={"period": str})
    assert list(s.columns) == ["community_id", "period", "topic", "respondents", "satisfied"]
    assert set(s["community_id"]) == comm and not s.duplicated(["community_id", "period", "topic"]).any()
    assert (s["respondents"] > 0).all() and s["satisfied"].between(0, s["respondents"]).all()
    cur = s[s["period"] >= "2026-07-01"].groupby("community_id")[["satisfied", "respondents"]].sum()
    share = cur["satisfied"] / cur["respondents"]
    assert 3 <= (share >= 0.9).sum() <= len(comm) - 3  # the 90 % target: some met, some not
    h = pd.read_csv(clean / "care_households.csv", dtype=str)
    assert list(h.columns) == ["id", "building_id", "category", "interval_days", "worker_id", "enrolled_on"]
    assert h["id"].is_unique and h["id"].str.fullmatch(r"H\d{5}").all()
    assert h["building_id"].isin(_gpkg(clean, "buildings")["id"]).all()
    assert h["worker_id"].isin(pd.read_csv(clean / "workers.csv", dtype=str)["id"]).all()
    assert set(h["category"]) <= {"dibao", "tekun", "gaoling", "canji", "dujv", "kunjing_ertong"}
    # nothing personal: no names, phone or ID-number-like digit runs anywhere
    for f in ("care_households.csv", "care_visits.csv", "surveys.csv"):
        assert not re.search(r"\d{11,}|name|phone|person", (clean / f).read_text(encoding="utf-8")), f
    v = pd.read_csv(clean / "care_visits.csv", dtype=str)
    assert v["household_id"].isin(h["id"]).all() and set(v["outcome"]) <= {"visited", "not_home", "refused"}
    last = pd.to_datetime(v.loc[v["outcome"] == "visited"].groupby("household_id")["visited_at"].max(), utc=True)
    end = pd.Timestamp("2026-11-01T00:00+08:00")
    since = h.set_index("id")["enrolled_on"].map(lambda d: pd.Timestamp(d, tz="Asia/Shanghai"))
    base = last.reindex(since.index).fillna(since)
    overdue = base + pd.to_timedelta(h.set_index("id")["interval_days"].astype(int), unit="D") < end
    assert 0.05 * len(h) <= overdue.sum() <= 0.5 * len(h)
    # security incidents: per-day rate after the baseline quarter vs in it, per community
    ev = pd.read_csv(clean / "events.csv", usecols=["category", "x", "y", "reported_at"])
    ev = ev[ev["category"].isin(["burglary", "theft", "dispute", "family_conflict"])]
    pts = gpd.GeoDataFrame(ev, geometry=gpd.points_from_xy(ev["x"], ev["y"]), crs=4548)
    cm = _gpkg(clean, "communities")[["id", "geometry"]]
    j = gpd.sjoin(pts, cm, predicate="within")
    day = j["reported_at"].str.slice(0, 10)
    change = (j[day >= "2026-02-01"].groupby("id").size() / 273) / (j[day < "2026-02-01"].groupby("id").size() / 92) - 1
    assert 3 <= (change <= -0.3).sum() <= len(comm) - 3


def test_gps(clean: Path) -> None:
    g = pd.read_parquet(clean / "gps_fixes")
    assert list(g.columns) == ["device_id", "worker_id", "t", "lon", "lat", "speed", "accuracy"]
    assert pd.api.types.is_datetime64_any_dtype(g["t"]) and g["t"].dt.tz is None
    workers = pd.read_csv(clean / "workers.csv", dtype=str)
    assert set(g["device_id"]) == set(workers["device_id"])
    assert g["lon"].between(117.3, 117.5).all() and g["lat"].between(32.85, 33.0).all()
    assert g["accuracy"].between(3, 8).all() and (g["speed"] >= 0).all()
    assert g["t"].min() >= pd.Timestamp("2026-10-01") and g["t"].max() < pd.Timestamp("2026-11-01")
    # a few GPS spikes: consecutive fixes > 100 m apart within 10 s
    one = g[g["device_id"] == "D001"].sort_values("t")
    x, y = one["lon"].to_numpy() * 93_500, one["lat"].to_numpy() * 111_000
    jump = np.hypot(np.diff(x), np.diff(y))
    assert 0 < (jump > 100).sum() < len(one) * 0.01


def _manifest(sample_dir: Path) -> list[dict]:
    doc = json.loads((sample_dir / "dirty" / "manifest.json").read_text(encoding="utf-8"))
    assert doc["seed"] == 7
    return doc["defects"]


def test_dirty_manifest_matches_files(sample_dir: Path) -> None:
    dirty, clean = sample_dir / "dirty", sample_dir / "clean"
    defects = _manifest(sample_dir)
    assert {d["defect"] for d in defects} == DEFECT_CODES
    boundary = _gpkg(clean, "boundary").geometry.iloc[0]
    named = {}
    for d in defects:
        assert set(d) >= {"file", "feature_id", "defect", "field"}
        named.setdefault(d["file"], set()).add(d["feature_id"])
        path = dirty / d["file"]
        assert path.exists(), d
        if d["defect"] == "wrong_crs":
            assert pyogrio.read_info(path)["crs"] == d["crs"] != "EPSG:4548"
            continue
        if d["defect"] == "wrong_encoding":
            cpg = path.with_suffix(".cpg").read_text().strip()
            dbf = path.with_suffix(".dbf").read_bytes()
            raw = dbf[int.from_bytes(dbf[8:10], "little") :].rstrip(b"\x1a")  # the records, after the header
            with pytest.raises(UnicodeDecodeError):
                raw.decode(cpg)
            raw.decode(d["encoding"])
            continue
        df = gpd.read_file(path, layer=path.stem)
        rows = df[df["id"] == d["feature_id"]]
        assert len(rows) == 1, d
        row, g = rows.iloc[0], rows.geometry.iloc[0]
        if d["defect"] == "self_intersection":
            assert not g.is_valid and "Self-intersection" in shapely.is_valid_reason(g)
        elif d["defect"] == "zero_area":
            assert g.area < 1e-6  # a collapsed footprint (a sliver of float round-off at most)
        elif d["defect"] == "duplicate":
            orig = df[df["id"] == d["duplicate_of"]].iloc[0]
            assert orig.geometry.equals(g)
            cols = [c for c in df.columns if c not in ("id", "geometry")]
            assert orig[cols].fillna("").astype(str).tolist() == row[cols].fillna("").astype(str).tolist()
        elif d["defect"] == "missing_height":
            assert pd.isna(row["height"]) and pd.isna(row.get("floors"))
        elif d["defect"] == "absurd_height":
            v = float(row[d["field"]])
            limit = {"trees.gpkg": MAX_TREE_HEIGHT_M, "furniture.gpkg": MAX_FURNITURE_HEIGHT_M}.get(d["file"], 500)
            assert v <= 0 or v > limit or (d["field"] == "floors" and v > 120)
        elif d["defect"] == "unparsable_value":
            with pytest.raises(ValueError):
                float(row[d["field"]])
        elif d["defect"] == "outside_boundary":
            assert not g.intersects(boundary)
    # every other feature is a valid copy of its clean twin
    for name in ("buildings", "trees", "furniture"):
        df = _gpkg(dirty, name)
        ok = df[~df["id"].isin(named.get(f"{name}.gpkg", set()))]
        twin = _gpkg(clean, name).set_index("id").loc[ok["id"]]
        assert len(ok) == len(twin) and ok.geometry.is_valid.all()
        assert (ok.geometry.values == twin.geometry.values).all() or all(
            a.equals(b) for a, b in zip(ok.geometry.values, twin.geometry.values, strict=True))


ONE_DISTRICT_FIXES = 4_320_000  # 50 devices x 30 shifts of 8 h, one fix every 10 s


def _gps_devices(clean: Path) -> tuple[set[str], int]:
    """(device ids, fix count) of gps_fixes/ without loading millions of rows into pandas."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    devices: set[str] = set()
    rows = 0
    for p in sorted(clean.glob("gps_fixes/*.parquet")):
        col = pq.read_table(p, columns=["device_id"]).column("device_id")
        devices |= set(pc.unique(col).to_pylist())
        rows += len(col)
    return devices, rows


def test_scale_two_ids_unique(tmp_path: Path) -> None:
    """Survey layers grow with K²; overlays stay one district's worth (no --scale-overlays)."""
    from data.generator import generate

    summary = generate(tmp_path, seed=7, scale=2, layers="admin,buildings,roads,trees,landcover,furniture,dem,overlays")
    clean = tmp_path / "clean"
    assert summary["area_km2"] == pytest.approx(4 * 4.61, rel=0.01)
    assert not (clean / "ortho.tif").exists() and not (clean / "pointcloud.las").exists()
    assert not (tmp_path / "dirty").exists()
    all_ids: list[str] = []
    for name in ("communities", "grid_cells", "buildings", "roads", "trees", "green", "water", "furniture", "cameras",
                 "checkpoints", "geofences"):
        df = pyogrio.read_dataframe(clean / f"{name}.gpkg", read_geometry=False, columns=["id"])
        assert df["id"].is_unique, name
        all_ids += df["id"].tolist()
    assert len(all_ids) == len(set(all_ids)), "ids collide across layers"
    b = pyogrio.read_dataframe(clean / "buildings.gpkg", read_geometry=False)
    assert re.fullmatch(r"B\d{6}-k3", b["id"].iloc[-1])
    assert 4 * 3000 <= len(b) <= 4 * 6000
    shp = pyogrio.read_dataframe(clean / "buildings_shp" / "buildings.shp", read_geometry=False, encoding="GBK")
    assert shp["BH"].tolist() == b["id"].tolist()
    assert (clean / "buildings_shp" / "buildings.dbf").read_bytes()[1:4] == bytes([126, 1, 1])  # FIXED_DATE
    # overlays: the first copy's, ids unsuffixed, referring to that copy's buildings
    w = pd.read_csv(clean / "workers.csv", dtype=str)
    assert 40 <= len(w) <= 60 and not w["id"].str.contains("-k").any()
    assert not pyogrio.read_dataframe(clean / "cameras.gpkg", read_geometry=False)["id"].str.contains("-k").any()
    people = pd.read_csv(clean / "population.csv", usecols=["person_id", "building_id"])
    assert people["person_id"].is_unique and people["building_id"].isin(b["id"]).all()
    assert len(people) <= 74_000
    assert pd.read_csv(clean / "events.csv", usecols=["id"])["id"].is_unique
    devices, fixes = _gps_devices(clean)
    assert devices == set(w["device_id"]) and fixes == ONE_DISTRICT_FIXES
    with rasterio.open(clean / "dem.tif") as ds:
        assert ds.width > 2 * 1500 and ds.height > 2 * 1000
        z = ds.read(1)
        half_w, half_h = ds.width // 2, ds.height // 2
    assert np.array_equal(z[:half_h, :half_w], z[half_h:, half_w:]), "DEM copies abut as identical tiles"
    # copies do not overlap
    bounds = gpd.read_file(clean / "boundary.gpkg").geometry.values
    assert len(bounds) == 4 and not shapely.intersects(bounds[0], bounds[1:]).any()


def test_scale_overlays_copies_them(tmp_path: Path) -> None:
    from data.generator import generate

    generate(tmp_path, seed=7, scale=2, layers="overlays", scale_overlays=True)
    clean = tmp_path / "clean"
    assert sorted(p.name for p in clean.glob("*.gpkg")) == ["boundary.gpkg", "cameras.gpkg", "checkpoints.gpkg",
                                                             "geofences.gpkg"]
    w = pd.read_csv(clean / "workers.csv", dtype=str)
    assert w["id"].is_unique and w["device_id"].is_unique and len(w) >= 4 * 40
    devices, fixes = _gps_devices(clean)
    assert devices == set(w["device_id"]) and fixes == 4 * ONE_DISTRICT_FIXES
    assert pd.read_csv(clean / "events.csv", usecols=["id"])["id"].is_unique


def test_generate_scale_3_memory_bounded(tmp_path: Path) -> None:
    """Peak RSS of `sample generate --scale 3 --layers buildings,roads` (9 districts, written copy by
    copy) stays near one district's: measured in a child process, no timing involved."""
    import subprocess
    import sys

    # a fresh parent whose only child is the generator: RUSAGE_CHILDREN is then that child's peak
    probe = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    cmd = [sys.executable, "-m", "onemap.cli", "sample", "generate", "--out", str(tmp_path), "--scale", "3",
           "--layers", "buildings,roads"]
    proc = subprocess.run([sys.executable, "-c", probe, *cmd], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak_mb = int(proc.stdout.split()[-1]) / 1024  # ru_maxrss is in kB on Linux
    assert peak_mb < RSS_BOUND_MB, f"peak RSS {peak_mb:.0f} MB"
    n = len(pyogrio.read_dataframe(tmp_path / "clean" / "buildings.gpkg", read_geometry=False, columns=["id"]))
    assert 9 * 3000 <= n <= 9 * 6000
    assert sorted(p.name for p in (tmp_path / "clean").iterdir()) == ["README.txt", "boundary.gpkg",
                                                                       "buildings.gpkg", "buildings_shp", "roads.gpkg"]


def test_gps_behaviours(clean: Path) -> None:
    """Vehicles park > 10 min inside no-parking zones; grid workers leave their patrol areas."""
    from pyproj import Transformer

    g = pd.read_parquet(clean / "gps_fixes")
    workers = pd.read_csv(clean / "workers.csv", dtype=str)
    gf = _gpkg(clean, "geofences")
    x, y = Transformer.from_crs("EPSG:4490", "EPSG:4548", always_xy=True).transform(g["lon"].to_numpy(),
                                                                                    g["lat"].to_numpy())
    nopark = gf[gf["kind"] == "no_parking"]
    veh = g["worker_id"].isin(workers.loc[workers["kind"] == "vehicle", "id"]).to_numpy()
    idx = np.flatnonzero(veh)
    hit = shapely.STRtree(nopark.geometry.values).query(shapely.points(x[idx], y[idx]), predicate="intersects")
    inside = pd.DataFrame({"i": idx[hit[0]], "gf": hit[1]})
    inside["dev"] = g["device_id"].to_numpy()[inside["i"]]
    inside["t"] = g["t"].to_numpy()[inside["i"]]
    inside["stopped"] = g["speed"].to_numpy()[inside["i"]] < 0.5
    inside = inside[inside["stopped"]]
    dwell = inside.groupby(["dev", "gf", inside["t"].dt.floor("D")])["t"].agg(lambda s: s.max() - s.min())
    assert (dwell > pd.Timedelta(minutes=10)).sum() >= 5
    # excursions: some grid-worker fixes lie > 80 m outside the worker's own patrol area
    patrol = gf[gf["kind"] == "patrol_area"].set_index("worker_id").geometry
    out = 0
    for wid in workers.loc[workers["kind"] == "grid_worker", "id"]:
        m = (g["worker_id"] == wid).to_numpy()
        area = patrol[wid]
        far = ~shapely.contains_xy(area.buffer(80), x[m], y[m])
        out += int(far.sum() > 30)
    assert out >= 3


def test_gps_loader_reads_month_folder(tmp_path: Path) -> None:
    """`onemap load gps` batches: a folder of month files reads as one source, row numbers run on
    across files, and --limit stops inside the second file."""
    from gis.loaders.gps import _batches
    from gis.loaders.io import Mapping

    folder = tmp_path / "gps_fixes"
    folder.mkdir()
    t = pd.to_datetime(["2026-09-30 23:00", "2026-09-30 23:30", "2026-10-01 00:10", "2026-10-02 08:00"])
    df = pd.DataFrame({"device_id": ["D001"] * 4, "worker_id": ["W001"] * 4, "t": t, "lon": 117.39, "lat": 32.93,
                       "speed": 1.0, "accuracy": 5.0})
    df.iloc[:2].to_parquet(folder / "2026-09.parquet", index=False)
    df.iloc[2:].to_parquet(folder / "2026-10.parquet", index=False)
    got = pd.concat(list(_batches(folder, Mapping(), batch_rows=1, limit=None)))
    assert got.index.tolist() == [0, 1, 2, 3] and got["t"].tolist() == t.tolist()
    limited = pd.concat(list(_batches(folder, Mapping(), batch_rows=10, limit=3)))
    assert limited.index.tolist() == [0, 1, 2]
    one = pd.concat(list(_batches(folder / "2026-10.parquet", Mapping(), batch_rows=10, limit=None)))
    assert one.index.tolist() == [0, 1]
