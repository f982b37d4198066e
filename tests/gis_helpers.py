"""Helpers shared by tests/test_gis_*.py (their fixtures live in ``tests/fixtures/gis.py``)."""

from __future__ import annotations


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def to_4548(lon: float, lat: float) -> tuple[float, float]:
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4490", "EPSG:4548", always_xy=True).transform(lon, lat)
    return float(x), float(y)
