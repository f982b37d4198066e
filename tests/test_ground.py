"""pipelines.ground: bilinear ground heights and the lowest ground under footprints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from pipelines.ground import Ground

X0, Y0 = 536_000.0, 3_644_000.0  # EPSG:4548


def plane(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 20.0 + 0.01 * (np.asarray(x) - X0) + 0.02 * (np.asarray(y) - Y0)


@pytest.fixture(scope="module")
def ground(tmp_path_factory: pytest.TempPathFactory) -> Ground:
    path: Path = tmp_path_factory.mktemp("ground") / "dem.tif"
    n, cell, left, top = 100, 2.0, X0 - 50.0, Y0 + 150.0
    cols, rows = np.meshgrid(np.arange(n), np.arange(n))
    z = plane(left + (cols + 0.5) * cell, top - (rows + 0.5) * cell).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", height=n, width=n, count=1, dtype="float32", crs="EPSG:4548",
                       transform=from_origin(left, top, cell, cell), nodata=-9999) as ds:
        ds.write(z, 1)
    return Ground.open(path)


def test_bilinear_is_exact_on_a_plane(ground: Ground) -> None:
    x = np.array([X0, X0 + 13.3, X0 + 77.7])
    y = np.array([Y0, Y0 + 41.1, Y0 + 99.9])
    assert ground.at_points(x, y, "EPSG:4548") == pytest.approx(plane(x, y), abs=1e-4)


def test_min_under_polygon_and_multipolygon(ground: Ground) -> None:
    box = shapely.box(X0 + 10, Y0 + 10, X0 + 30, Y0 + 20)
    # a repaired bow-tie is a MultiPolygon: its lowest vertex (X0+50, Y0) must count
    bowtie = shapely.make_valid(shapely.Polygon([(X0 + 50, Y0), (X0 + 60, Y0 + 10), (X0 + 60, Y0),
                                                 (X0 + 50, Y0 + 10)]))
    assert bowtie.geom_type == "MultiPolygon"
    mins = ground.min_under(np.array([box, bowtie], dtype=object), "EPSG:4548")
    assert mins[0] == pytest.approx(plane(X0 + 10, Y0 + 10), abs=1e-4)
    assert mins[1] == pytest.approx(plane(X0 + 50, Y0), abs=1e-4)


def test_min_under_outside_the_dem_is_nan(ground: Ground) -> None:
    far = shapely.box(X0 + 5000, Y0, X0 + 5010, Y0 + 10)
    assert np.isnan(ground.min_under(np.array([far], dtype=object), "EPSG:4548")[0])
