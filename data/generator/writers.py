"""File writers with byte-stable output (fixed GeoPackage/DBF dates, sorted rows, fixed layouts)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio

from .buildings import USE_ZH
from .common import FIXED_DATE

log = logging.getLogger(__name__)

ROOF_ZH = {"flat": "平顶", "gable": "双坡", "hip": "四坡"}
OGR_DATE = f"{FIXED_DATE}T00:00:00.000Z"
SHP_FIELDS = {
    "id": "BH",
    "name": "MC",
    "floors": "CS",
    "height": "JZGD",
    "use": "YT",
    "roof_type": "WDLX",
    "community": "SQ",
}


def fix_dates() -> None:
    """GeoPackages store a last-change timestamp: pin it (GDAL reads OGR_CURRENT_DATE)."""
    os.environ["OGR_CURRENT_DATE"] = OGR_DATE
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": OGR_DATE})


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        if p.exists():
            p.unlink()


def write_gpkg(gdf: gpd.GeoDataFrame, path: Path) -> int:
    """One layer named after the file."""
    fix_dates()
    path = Path(path)
    _remove(path)
    pyogrio.write_dataframe(gdf, path, layer=path.stem, driver="GPKG")
    return len(gdf)


def shp_frame(buildings: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The pinyin-field, Chinese-value view of buildings for the surveyors' Shapefile."""
    out = gpd.GeoDataFrame(
        {
            "BH": buildings["id"].to_numpy(),
            "MC": buildings["name"].to_numpy(),
            "CS": buildings["floors"].to_numpy(),
            "JZGD": buildings["height"].to_numpy(),
            "YT": buildings["use"].map(USE_ZH).to_numpy(),
            "WDLX": buildings["roof_type"].map(ROOF_ZH).to_numpy(),
            "SQ": buildings["community"].to_numpy(),
        },
        geometry=buildings.geometry.values,
        crs=buildings.crs,
    )
    return out


def write_shp(frame: gpd.GeoDataFrame, folder: Path, encoding: str = "GBK", cpg: str = "GBK") -> int:
    """buildings.shp (+ .cpg saying `cpg`) with text bytes in `encoding`."""
    fix_dates()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.glob("buildings.*"):
        p.unlink()
    path = folder / "buildings.shp"
    pyogrio.write_dataframe(
        frame,
        path,
        driver="ESRI Shapefile",
        encoding=encoding,
        layer_options={"DBF_DATE_LAST_UPDATE": FIXED_DATE},
    )
    (folder / "buildings.cpg").write_bytes(cpg.encode("ascii"))
    return len(frame)


def write_csv(df: pd.DataFrame, path: Path) -> int:
    df.to_csv(path, index=False, lineterminator="\n", encoding="utf-8", float_format=None)
    return len(df)


def write_gps_parquet(path: Path, parts) -> int:
    """parts: iterable of (device dictionary, worker dictionary, dict of columns with 'code')."""
    schema = pa.schema(
        [
            ("device_id", pa.string()),
            ("worker_id", pa.string()),
            ("t", pa.timestamp("ms")),
            ("lon", pa.float64()),
            ("lat", pa.float64()),
            ("speed", pa.float32()),
            ("accuracy", pa.float32()),
        ]
    )
    n = 0
    with pq.ParquetWriter(path, schema, compression="zstd", write_statistics=True) as w:
        for devices, workers, cols in parts:
            code = pa.array(cols["code"], type=pa.int32())
            dev = pa.DictionaryArray.from_arrays(code, pa.array(devices, pa.string())).cast(pa.string())
            wrk = pa.DictionaryArray.from_arrays(code, pa.array(workers, pa.string())).cast(pa.string())
            table = pa.table(
                [
                    dev,
                    wrk,
                    pa.array(cols["t"], pa.timestamp("ms")),
                    pa.array(cols["lon"]),
                    pa.array(cols["lat"]),
                    pa.array(cols["speed"]),
                    pa.array(cols["accuracy"]),
                ],
                schema=schema,
            )
            step = 1_000_000
            for k in range(0, len(table), step):
                w.write_table(table.slice(k, step))
            n += len(table)
    return n


def nullable(values) -> np.ndarray:
    return np.array(
        [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in values], dtype=object
    )
