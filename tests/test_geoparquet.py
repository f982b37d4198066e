"""GeoParquet read by bounding box / row number (core/delivery/geoparquet.py, issue 14), on small
synthetic files; the partitioned builds from GeoParquet are tested in tests/test_scale.py and
tests/test_scale_layers.py.

* the extent comes from the ``geo`` metadata's bbox, else the covering's row-group statistics,
  else a streamed pass (covering values, or the geometry): always the layer's bounds;
* a column without ``crs`` is OGC:CRS84 (the specification), a null one is "no CRS";
* a float32 covering (rounded, not always outwards) still gives exactly the rows whose envelope
  meets the box; rows without geometry or empty ones never meet one;
* GeoArrow-native geometry is read whole (the one-piece build), not by row group.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from core.delivery import geoparquet as gp
from core.delivery.read import read_layer

X0, Y0 = 535_000.0, 3_644_000.0  # EPSG:4548 metres


def _frame(n: int = 300, seed: int = 5) -> gpd.GeoDataFrame:
    """``n`` small rotated rectangles (non-round coordinates), in rows from west to east (so row
    groups are strips a bbox can skip), one row without geometry, one empty."""
    rng = np.random.default_rng(seed)
    xy = np.column_stack([X0 + np.sort(rng.uniform(0, 2000, n)), Y0 + rng.uniform(0, 2000, n)])  # west to east
    geoms = [shapely.affinity.rotate(shapely.box(x, y, x + 7.31, y + 11.17), a)
             for (x, y), a in zip(xy, rng.uniform(0, 90, n), strict=True)]
    geoms[3], geoms[4] = None, shapely.Polygon()
    return gpd.GeoDataFrame({"id": [f"B{i:04d}" for i in range(n)], "height": rng.uniform(3, 60, n)},
                            geometry=geoms, crs="EPSG:4548")


def _edit_geo(src: Path, dst: Path, edit, row_group_size: int = 64, table_edit=None) -> Path:  # noqa: ANN001
    """A copy of ``src`` with its ``geo`` metadata (and table) edited."""
    table = pq.read_table(src)
    geo = json.loads(table.schema.metadata[b"geo"])
    edit(geo)
    if table_edit is not None:
        table = table_edit(table)
    table = table.replace_schema_metadata({**table.schema.metadata, b"geo": json.dumps(geo).encode()})
    pq.write_table(table, dst, row_group_size=row_group_size)
    return dst


def _options(**kw: object) -> SimpleNamespace:
    return SimpleNamespace(**{"partition_level": None, "partition_features": 100, "src_crs": None, "layer": None,
                              "dem": None, **kw})


def test_extent_sources(tmp_path: Path) -> None:
    gdf = _frame()
    bounds = tuple(gdf.total_bounds)
    cov = tmp_path / "cov.parquet"
    gdf.to_parquet(cov, write_covering_bbox=True, row_group_size=64)
    plain = tmp_path / "plain.parquet"
    gdf.to_parquet(plain, row_group_size=64)

    def no_bbox(geo: dict) -> None:
        geo["columns"]["geometry"].pop("bbox")

    got = {
        "metadata": gp.extent(cov),
        "covering statistics": gp.extent(_edit_geo(cov, tmp_path / "stats.parquet", no_bbox)),
        "covering values": gp.extent(_nostats(cov, tmp_path / "nostats.parquet", no_bbox)),
        "geometry scan": gp.extent(_edit_geo(plain, tmp_path / "scan.parquet", no_bbox)),
    }
    for origin, (box, where) in got.items():
        assert where == origin and box == pytest.approx(bounds, abs=1e-9), origin
    meta = gp.read_meta(cov)
    assert meta.num_rows == len(gdf) and meta.row_groups == (64, 64, 64, 64, 44)
    assert meta.covering is not None and meta.covering.exact and "bbox" not in meta.columns


def _nostats(src: Path, dst: Path, edit) -> Path:  # noqa: ANN001
    """Like :func:`_edit_geo`, written without column statistics."""
    table = pq.read_table(src)
    geo = json.loads(table.schema.metadata[b"geo"])
    edit(geo)
    table = table.replace_schema_metadata({**table.schema.metadata, b"geo": json.dumps(geo).encode()})
    pq.write_table(table, dst, row_group_size=64, write_statistics=False)
    return dst


def test_crs_absent_is_crs84_and_null_is_none(tmp_path: Path) -> None:
    from pipelines.partitions import probe_source

    lonlat = _frame().to_crs("EPSG:4326")
    src = tmp_path / "lonlat.parquet"
    lonlat.to_parquet(src, write_covering_bbox=True, row_group_size=64)
    absent = _edit_geo(src, tmp_path / "absent.parquet", lambda geo: geo["columns"]["geometry"].pop("crs"))
    null = _edit_geo(src, tmp_path / "null.parquet", lambda geo: geo["columns"]["geometry"].update(crs=None))
    assert gp.read_meta(absent).crs == gp.CRS84
    assert gp.read_meta(null).crs is None
    mapping = SimpleNamespace(layer=None, crs=None)
    probe = probe_source(absent, _options(), mapping)
    assert probe is not None and probe.layer_crs.to_string() == "OGC:CRS84" and probe.fid_base == 0
    assert probe.n == len(lonlat) and probe.level >= 1
    assert probe_source(null, _options(), mapping) is None  # no CRS: the one-piece path reports it
    assert probe_source(null, _options(src_crs="EPSG:4326"), mapping).layer_crs.to_epsg() == 4326
    assert probe_source(src, _options(partition_features=len(lonlat)), mapping) is None  # few rows: one piece
    # a bbox read names the CRS as the whole read does
    bbox = tuple(lonlat.total_bounds)
    assert read_layer(absent, (), bbox=bbox, expected_crs=None).crs == read_layer(absent, (), expected_crs=None).crs


def test_float32_covering_is_exact(tmp_path: Path) -> None:
    gdf = _frame(400)
    src = tmp_path / "f64.parquet"
    gdf.to_parquet(src, write_covering_bbox=True, row_group_size=50)
    f32 = pa.struct([(k, pa.float32()) for k in ("xmin", "ymin", "xmax", "ymax")])

    def to_f32(table: pa.Table) -> pa.Table:
        return table.set_column(table.schema.get_field_index("bbox"), "bbox", table["bbox"].cast(f32))

    f32_src = _edit_geo(src, tmp_path / "f32.parquet", lambda geo: None, 50, to_f32)
    meta = gp.read_meta(f32_src)
    assert meta.covering is not None and not meta.covering.exact
    env = shapely.bounds(np.asarray(gdf.geometry.values, dtype=object))
    rounded_in = 0
    for k in range(0, 400, 7):
        if k in (3, 4):
            continue
        x0, y0, x1, y1 = env[k]
        rounded_in += int(np.float32(x1) < x1)
        for bbox in ((x1, y0, x1 + 3.0, y1), (x0 - 3.0, y0 - 3.0, x0, y0), (x0, y1, x1, y1 + 3.0)):
            stats = gp.ScanStats()
            rows = gp.read_rows(f32_src, bbox=bbox, stats=stats).index.tolist()
            expected = np.flatnonzero((env[:, 0] <= bbox[2]) & (env[:, 2] >= bbox[0]) & (env[:, 1] <= bbox[3])
                                      & (env[:, 3] >= bbox[1])).tolist()
            assert k in rows and rows == expected, (k, bbox)
            assert stats.rows_decoded < 400 / 4 and stats.row_groups_skipped > 0
    assert rounded_in > 5  # float32 rounded these envelopes inwards: only the widening finds them


def test_rows_without_geometry_and_fids(tmp_path: Path) -> None:
    gdf = _frame()
    src = tmp_path / "b.parquet"
    gdf.to_parquet(src, write_covering_bbox=True, row_group_size=64)
    everything = (X0 - 10, Y0 - 10, X0 + 2100, Y0 + 2100)
    rows = gp.read_rows(src, bbox=everything).index.tolist()
    assert rows == [r for r in range(len(gdf)) if r not in (3, 4)]  # no geometry, empty: never in a box
    layer = read_layer(src, (), fids=[4, 3, 299])
    geoms = layer.gdf.geometry.values
    assert layer.fids.tolist() == [4, 3, 299] and geoms[0].is_empty and geoms[1] is None
    assert shapely.equals_exact(geoms[2], gdf.geometry.values[299], 0)
    whole = read_layer(src, (), with_fids=True)
    assert whole.fids.tolist() == list(range(len(gdf))) and whole.scan is None


def test_geoarrow_encoding_is_read_whole(tmp_path: Path) -> None:
    from core.delivery.errors import UnreadableError
    from pipelines.partitions import probe_source

    gdf = _frame()
    gdf.geometry = shapely.centroid(gdf.geometry.values)
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    gdf = gdf[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    src = tmp_path / "points.parquet"
    gdf.to_parquet(src, geometry_encoding="geoarrow", row_group_size=64)
    meta = gp.read_meta(src)
    assert meta.encoding == "point" and not gp.partitionable(meta)
    assert probe_source(src, _options(partition_level=2), SimpleNamespace(layer=None, crs=None)) is None
    assert len(read_layer(src, ()).gdf) == len(gdf)  # the whole-file path, as before
    with pytest.raises(UnreadableError, match=r"points\.parquet: cannot read as GeoParquet: .* only WKB geometry"):
        read_layer(src, (), bbox=tuple(gdf.total_bounds))


def test_not_geoparquet_names_the_file(tmp_path: Path) -> None:
    from core.delivery.errors import UnreadableError

    src = tmp_path / "table.parquet"
    pq.write_table(pa.table({"id": ["a", "b"]}), src)
    with pytest.raises(UnreadableError, match=r"table\.parquet: cannot read as GeoParquet: no 'geo' metadata"):
        gp.read_rows(src, bbox=(0, 0, 1, 1))
    with pytest.raises(UnreadableError, match=r"table\.parquet: cannot read as GeoParquet"):
        read_layer(src, ())  # the whole-file path's message, as before


def test_batches_inside_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read holds ≤ BATCH_ROWS rows of a row group at once: batches of 7 inside row groups of
    64 give the same rows, attributes and geometries; a file of geometry only reads too."""
    gdf = _frame()
    env = shapely.bounds(np.asarray(gdf.geometry.values, dtype=object))
    files = {"covering": tmp_path / "cov.parquet", "plain": tmp_path / "plain.parquet",
             "geometry only": tmp_path / "geom.parquet"}
    gdf.to_parquet(files["covering"], write_covering_bbox=True, row_group_size=64)
    gdf.to_parquet(files["plain"], row_group_size=64)
    gdf[["geometry"]].to_parquet(files["geometry only"], write_covering_bbox=True, row_group_size=64)
    no_bbox = _nostats(files["covering"], tmp_path / "nostats.parquet", lambda g: g["columns"]["geometry"].pop("bbox"))
    monkeypatch.setattr(gp, "BATCH_ROWS", 7)
    boxes = [(X0 + 500, Y0 + 200, X0 + 900, Y0 + 1500), (X0 - 5, Y0 - 5, X0 + 100, Y0 + 2100), (0, 0, 1, 1)]
    for kind, src in files.items():
        for bbox in boxes:
            got = gp.read_rows(src, bbox=bbox)
            expected = np.flatnonzero((env[:, 0] <= bbox[2]) & (env[:, 2] >= bbox[0]) & (env[:, 1] <= bbox[3])
                                      & (env[:, 3] >= bbox[1]))
            assert got.index.tolist() == expected.tolist(), (kind, bbox)
            assert bool(np.all(shapely.equals_exact(got.geometry.values, gdf.geometry.values[expected], 0)))
            if kind != "geometry only":
                assert got["id"].tolist() == gdf["id"].iloc[expected].tolist()
        asked = [250, 3, 64, 63, 130, 6]
        got = gp.read_rows(src, fids=asked)
        assert got.index.tolist() == asked and list(got.columns) == list(pq.read_schema(src).names[:len(got.columns)])
        if kind != "geometry only":
            assert got["id"].tolist() == gdf["id"].iloc[asked].tolist()
    assert gp.extent(no_bbox) == ((pytest.approx(tuple(gdf.total_bounds))), "covering values")
