"""Bounded-memory writers for ``--scale K``: one district copy at a time is held in memory.

Vector layers are appended copy by copy (GeoPackage / Shapefile through pyogrio ``append``), CSV
files are appended without repeating the header, the DEM mosaic is written in strips of whole
256-row blocks and the GPS fixes go to one Parquet file per month (``gps_fixes/YYYY-MM.parquet``).
With one copy every writer makes the same call the single-shot writers make, so scale-1 files
are byte-identical to them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import rasterio

from .common import CRS_4548, FIXED_DATE
from .writers import _remove, fix_dates

log = logging.getLogger(__name__)

GPS_SCHEMA = pa.schema(
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
ROW_GROUP = 1_000_000


def append_gpkg(parts: Iterable[gpd.GeoDataFrame], path: Path) -> int:
    """One layer named after the file, written part by part (the first part creates it)."""
    fix_dates()
    path = Path(path)
    _remove(path)
    n = 0
    for k, gdf in enumerate(parts):
        gdf = gpd.GeoDataFrame(gdf, geometry="geometry", crs=CRS_4548)
        pyogrio.write_dataframe(gdf, path, layer=path.stem, driver="GPKG", append=k > 0)
        n += len(gdf)
    return n


def append_shp(parts: Iterable[gpd.GeoDataFrame], folder: Path, encoding: str = "GBK", cpg: str = "GBK") -> int:
    """buildings.shp written part by part; the DBF 'last update' date is pinned afterwards."""
    fix_dates()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.glob("buildings.*"):
        p.unlink()
    path = folder / "buildings.shp"
    n = 0
    for k, frame in enumerate(parts):
        pyogrio.write_dataframe(
            frame,
            path,
            driver="ESRI Shapefile",
            encoding=encoding,
            layer_options={"DBF_DATE_LAST_UPDATE": FIXED_DATE},
            append=k > 0,
        )
        n += len(frame)
    if n and k > 0:  # an append stamps today's date into the DBF header (bytes 1-3: YY-1900, MM, DD)
        y, m, d = (int(v) for v in FIXED_DATE.split("-"))
        with open(folder / "buildings.dbf", "r+b") as f:
            f.seek(1)
            f.write(bytes([y - 1900, m, d]))
    (folder / "buildings.cpg").write_bytes(cpg.encode("ascii"))
    return n


def append_csv(parts: Iterable[pd.DataFrame], path: Path) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        for k, df in enumerate(parts):
            df.to_csv(f, index=False, header=k == 0, lineterminator="\n", float_format=None)
            n += len(df)
    return n


def write_dem_tiled(path: Path, tile: np.ndarray, transform, scale: int, write_one: Callable) -> int:
    """The DEM of ``scale`` x ``scale`` abutting copies of ``tile`` (top-left at ``transform``'s
    origin), written in strips of 256 rows so the mosaic is never held whole."""
    if scale == 1:
        write_one(path, tile, transform)
        return int(tile.size)
    nrows, ncols = tile.shape
    height, width = nrows * scale, ncols * scale
    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "width": width,
        "height": height,
        "crs": CRS_4548,
        "transform": transform,
        "nodata": -9999.0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 3,
    }
    with rasterio.open(path, "w", **profile) as ds:
        for r0 in range(0, height, 256):
            r1 = min(height, r0 + 256)
            strip = np.tile(tile[np.arange(r0, r1) % nrows], (1, scale))
            ds.write(strip, 1, window=rasterio.windows.Window(0, r0, width, r1 - r0))
    return width * height


class MonthlyParquet:
    """GPS fixes, one Parquet file per UTC month (``DIR/YYYY-MM.parquet``), streamed part by part."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for p in self.folder.glob("*.parquet"):
            p.unlink()
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.rows = 0

    def write(self, devices, workers, cols: dict) -> None:
        """devices/workers: dictionaries indexed by ``cols['code']``; cols: t, lon, lat, speed, accuracy."""
        code = pa.array(cols["code"], type=pa.int32())
        dev = pa.DictionaryArray.from_arrays(code, pa.array(devices, pa.string())).cast(pa.string())
        wrk = pa.DictionaryArray.from_arrays(code, pa.array(workers, pa.string())).cast(pa.string())
        t = np.asarray(cols["t"]).astype("datetime64[ms]")
        table = pa.table(
            [
                dev,
                wrk,
                pa.array(t, pa.timestamp("ms")),
                pa.array(cols["lon"]),
                pa.array(cols["lat"]),
                pa.array(cols["speed"]),
                pa.array(cols["accuracy"]),
            ],
            schema=GPS_SCHEMA,
        )
        month = t.astype("datetime64[M]")
        for m in np.unique(month):
            key = str(m)
            sel = np.flatnonzero(month == m)
            if key not in self.writers:
                self.writers[key] = pq.ParquetWriter(
                    self.folder / f"{key}.parquet", GPS_SCHEMA, compression="zstd", write_statistics=True
                )
            part = table.take(pa.array(sel))
            for k in range(0, len(part), ROW_GROUP):
                self.writers[key].write_table(part.slice(k, ROW_GROUP))
            self.rows += len(sel)

    def close(self) -> int:
        for w in self.writers.values():
            w.close()
        log.info("generator: gps %d fixes in %d month files", self.rows, len(self.writers))
        return self.rows
