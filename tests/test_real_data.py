"""Real open data (tests/data/README.md) through the CLI: `onemap tiles buildings|roads|furniture`
with field names only, then `onemap tiles validate` with 0 errors, and every feature accounted for
against what the tiles really hold (ids read back from the glb property tables)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiles.gltf import read_glb

DATA = Path(__file__).parent / "data"
ONEMAP = Path(sys.executable).parent / "onemap"
GTX = Path("/usr/share/proj/egm96_15.gtx")
pytestmark = pytest.mark.skipif(not GTX.exists(), reason="proj-data (egm96_15.gtx) missing")


def onemap(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ONEMAP), *map(str, args)], capture_output=True, text=True, timeout=600)


def tile_ids(out: Path) -> list[str]:
    """Every feature id in every content of the tileset (leaves hold every feature once)."""
    ids: list[str] = []

    def walk(tile: dict, base: Path) -> None:
        uri = (tile.get("content") or {}).get("uri")
        if uri and not tile.get("children"):
            path = base / uri
            if path.suffix == ".json":
                walk(json.loads(path.read_text())["root"], path.parent)
            else:
                table = read_glb(path.read_bytes()).property_table()
                ids.extend(str(i) for i in table.get("id", []))
        for child in tile.get("children", []):
            walk(child, base)

    walk(json.loads((out / "tileset.json").read_text())["root"], out)
    return ids


def _report(out: Path) -> dict:
    doc = json.loads((out / "report.json").read_text())
    return doc["layers"][0] if "layers" in doc else doc


def _check(out: Path, src_count: int) -> dict:
    v = onemap("tiles", "validate", out, "--no-gltf")
    assert v.returncode == 0, v.stdout + v.stderr
    rep = _report(out)
    counts = rep["counts"]
    ids = tile_ids(out)
    assert len(ids) == len(set(ids)) == counts["written"]
    assert counts["input"] == src_count == counts["written"] + counts["rejected"]
    rejected = {r["id"] for r in rep.get("rejected", [])}
    assert not rejected & set(ids)
    return rep


def _count(path: Path) -> int:
    import pyogrio

    return int(pyogrio.read_info(path)["features"])


def test_osm_finland_buildings_with_levels(tmp_path: Path) -> None:
    src = DATA / "kouvola_osm" / "buildings.gpkg"
    out = tmp_path / "b"
    r = onemap("tiles", "buildings", src, "--out", out, "--floors-field", "levels")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = _check(out, _count(src))
    assert rep["counts"]["written"] >= 10  # every building with building:levels
    assert set(rep["rejected_by_code"]) <= {"missing_height", "duplicate", "zero_area", "duplicate_id"}


def test_osm_finland_roads_with_names(tmp_path: Path) -> None:
    src = DATA / "kouvola_osm" / "roads.gpkg"
    out = tmp_path / "r"
    r = onemap("tiles", "roads", src, "--out", out, "--mapping", DATA / "kouvola_osm" / "roads.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    _check(out, _count(src))
    names = set()
    for tile in (out / "tiles").rglob("*.glb"):
        names |= {str(n) for n in read_glb(tile.read_bytes()).property_table().get("name", [])}
    assert {"Haapamäenkatu", "Kääpäkatu"} <= names  # UTF-8 with diacritics, untouched


def test_osm_finland_bus_stops_as_furniture(tmp_path: Path) -> None:
    src = DATA / "kouvola_osm" / "bus_stops.gpkg"
    out = tmp_path / "f"
    r = onemap("tiles", "furniture", src, "--out", out, "--mapping", DATA / "kouvola_osm" / "bus_stops.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = _check(out, _count(src))
    assert rep["counts"]["written"] == 36


def test_british_national_grid_buildings(tmp_path: Path) -> None:
    src = DATA / "soho_london" / "buildings.gpkg"
    out = tmp_path / "s"
    r = onemap("tiles", "buildings", src, "--out", out, "--id-field", "cat", "--missing-height", "default")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = _check(out, _count(src))
    assert rep["counts"]["written"] >= 150
    ts = json.loads((out / "tileset.json").read_text())
    assert ts["extras"]["heights"]["geoid"] == "egm96"
