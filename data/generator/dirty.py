"""The dirty delivery: the affected layers with known defects plus dirty/manifest.json.

Every defect code of the contract occurs at least once; every feature not named in the manifest
is a valid copy of its clean twin.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .common import CRS_4490
from .writers import shp_frame, write_gpkg, write_shp

OUTSIDE_SHIFT_M = -6000.0  # south: copies (--scale) go north and east, so this is outside all of them


def _bowtie(g):
    minx, miny, maxx, maxy = g.bounds
    return shapely.Polygon([(minx, miny), (maxx, maxy), (maxx, miny), (minx, maxy), (minx, miny)])


def _zero_area(g):
    """A collapsed footprint: a ring along one grid line (every y equal, so the area is exactly 0)."""
    minx, miny, maxx, maxy = g.bounds
    y = round((miny + maxy) / 2, 2)
    return shapely.Polygon([(minx, y), (round((minx + maxx) / 2, 2), y), (maxx, y), (minx, y)])


def _shift(g):
    return shapely.transform(g, lambda xy: xy + np.array([0.0, OUTSIDE_SHIFT_M]))


def _next_id(ids: pd.Series, prefix: str, width: int, k: int) -> str:
    nums = ids.str.extract(rf"^{prefix}(\d+)$")[0].dropna().astype(int)
    return f"{prefix}{int(nums.max()) + k:0{width}d}"


class _Layer:
    def __init__(self, file: str, frame: gpd.GeoDataFrame, manifest: list, rng: np.random.Generator):
        self.file, self.df, self.manifest, self.rng = file, frame.copy(), manifest, rng
        self.used: set[int] = set()

    def pick(self, mask=None) -> int:
        ok = np.ones(len(self.df), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        ok[list(self.used)] = False
        cand = np.flatnonzero(ok)
        i = int(cand[int(self.rng.integers(len(cand)))])
        self.used.add(i)
        return i

    def note(self, i_or_id, defect: str, field: str | None = None, **extra) -> None:
        fid = i_or_id if isinstance(i_or_id, str) or i_or_id is None else self.df["id"].iloc[i_or_id]
        self.manifest.append(
            {"file": self.file, "feature_id": fid, "defect": defect, "field": field, **extra}
        )

    def set_geom(self, i: int, g) -> None:
        geoms = self.df.geometry.values.copy()
        geoms[i] = g
        self.df = self.df.set_geometry(gpd.GeoSeries(geoms, crs=self.df.crs, index=self.df.index))

    def duplicate(self, prefix: str, width: int, k: int = 1) -> None:
        i = self.pick()
        row = self.df.iloc[[i]].copy()
        new_id = _next_id(self.df["id"], prefix, width, k)
        row["id"] = new_id
        self.df = pd.concat([self.df, row], ignore_index=True)
        self.note(new_id, "duplicate", None, duplicate_of=self.df["id"].iloc[i])


def write(rng: np.random.Generator, frames: dict, out: Path, seed: int) -> int:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest: list[dict] = []

    # ---- buildings.gpkg
    b = _Layer("buildings.gpkg", frames["buildings"], manifest, rng)
    full = (b.df["height"].notna() & b.df["floors"].notna()).to_numpy()
    i = b.pick(full)
    b.set_geom(i, _bowtie(b.df.geometry.iloc[i]))
    b.note(i, "self_intersection")
    i = b.pick(full)
    b.set_geom(i, _zero_area(b.df.geometry.iloc[i]))
    b.note(i, "zero_area")
    i = b.pick(full)
    b.df.loc[i, ["height", "floors"]] = [np.nan, pd.NA]
    b.note(i, "missing_height", "height")
    i = b.pick(full)
    b.df.loc[i, "height"] = 900.0
    b.note(i, "absurd_height", "height")
    i = b.pick(full)
    b.df.loc[i, "height"] = -3.5
    b.note(i, "absurd_height", "height")
    i = b.pick(full)
    b.df.loc[i, "floors"] = 150
    b.note(i, "absurd_height", "floors")
    i = b.pick(full)
    b.set_geom(i, _shift(b.df.geometry.iloc[i]))
    b.note(i, "outside_boundary")
    b.duplicate("B", 6)
    # unparsable height: the column becomes text (as in many real deliveries)
    i = b.pick(full)
    h = b.df["height"].to_numpy()
    text = np.array(
        [None if (v is None or (isinstance(v, float) and np.isnan(v))) else f"{v:g}" for v in h], dtype=object
    )
    text[i] = "abc"
    b.df["height"] = text
    b.note(i, "unparsable_value", "height")
    n = write_gpkg(b.df, out / "buildings.gpkg")

    # ---- buildings_shp/: clean features, UTF-8 bytes but a .cpg saying GBK
    write_shp(shp_frame(frames["buildings"]), out / "buildings_shp", encoding="UTF-8", cpg="GBK")
    manifest.append(
        {
            "file": "buildings_shp/buildings.shp",
            "feature_id": None,
            "defect": "wrong_encoding",
            "field": None,
            "encoding": "UTF-8",
            "declared_encoding": "GBK",
        }
    )

    # ---- roads.gpkg: the whole layer in CGCS2000 geographic degrees, plus a duplicate
    r = _Layer("roads.gpkg", frames["roads"], manifest, rng)
    r.duplicate("R", 4)
    n += write_gpkg(r.df.to_crs(CRS_4490), out / "roads.gpkg")
    manifest.append(
        {"file": "roads.gpkg", "feature_id": None, "defect": "wrong_crs", "field": None, "crs": CRS_4490}
    )

    # ---- trees.gpkg
    t = _Layer("trees.gpkg", frames["trees"], manifest, rng)
    i = t.pick()
    t.df.loc[i, "height"] = 350.0
    t.note(i, "absurd_height", "height")
    i = t.pick()
    t.df.loc[i, "height"] = np.nan
    t.note(i, "missing_height", "height")
    i = t.pick()
    t.set_geom(i, _shift(t.df.geometry.iloc[i]))
    t.note(i, "outside_boundary")
    t.duplicate("T", 6)
    n += write_gpkg(t.df, out / "trees.gpkg")

    # ---- furniture.gpkg
    f = _Layer("furniture.gpkg", frames["furniture"], manifest, rng)
    not_sculpture = (f.df["type"] != "sculpture").to_numpy()
    i = f.pick(not_sculpture)
    f.set_geom(i, _shift(f.df.geometry.iloc[i]))
    f.note(i, "outside_boundary")
    i = f.pick(not_sculpture)
    f.df.loc[i, "height"] = 600.0
    f.note(i, "absurd_height", "height")
    f.duplicate("F", 6)
    i = f.pick(not_sculpture)
    hd = f.df["heading"].to_numpy()
    text = np.array([f"{v:g}" for v in hd], dtype=object)
    text[i] = "东北"
    f.df["heading"] = text
    f.note(i, "unparsable_value", "heading")
    n += write_gpkg(f.df, out / "furniture.gpkg")

    (out / "manifest.json").write_text(
        json.dumps({"seed": seed, "defects": manifest}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    return len(manifest)
