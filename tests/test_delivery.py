"""The delivery layer (core/delivery): one reason table (documented once), hints that name real
options, encodings declared vs detected (never mojibake on valid text in any script), fractional
floors, per-vertex coordinate rules."""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from typer.main import get_command

from core.delivery import reasons
from core.delivery.errors import EncodingError
from core.delivery.read import FieldSpec, read_layer
from core.delivery.values import parse_number

REPO = Path(__file__).resolve().parents[1]
SPECS = [FieldSpec("id", required=True), FieldSpec("name"), FieldSpec("floors", "float"),
         FieldSpec("height", "float")]

#: made-up street names in several scripts (no personal data)
NAMES = ["Eteläinen Makasiinikatu", "Łódź Ogrodowa", "Straße der Linden", "Улица Тестовая",
         "Οδός Δοκιμής", "测试路", "テスト通り", "시험로", "Çarşı Sokağı", "Ñandú Calle"]


def _frame(names: list[str] = NAMES) -> gpd.GeoDataFrame:
    geoms = [shapely.box(536_000 + 20 * i, 3_644_000, 536_010 + 20 * i, 3_644_010) for i in range(len(names))]
    return gpd.GeoDataFrame({"id": [f"B{i}" for i in range(len(names))], "name": names,
                             "height": [10.0] * len(names)}, geometry=geoms, crs="EPSG:4548")


# ------------------------------------------------------------------------------------ reason table
def test_docs_list_exactly_the_reason_table() -> None:
    doc = (REPO / "docs" / "delivery.md").read_text(encoding="utf-8")
    section = doc.split("<!-- reasons:begin -->\n", 1)[1].split("<!-- reasons:end -->", 1)[0]
    assert section == reasons.markdown_table(), "regenerate: python -m core.delivery.reasons"
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M))
    assert documented == set(reasons.REASONS)


def test_every_code_used_in_the_code_is_in_the_table() -> None:
    used: set[str] = set()
    pattern = re.compile(r"""\.(?:reject|repair|count_repair)\(\s*[^,]+,\s*"([a-z_]+)\"""")
    # reject_mask(df, mask, field, "code", ...) / reject_rows(rows, ids, field, "code", ...)
    pattern2 = re.compile(r"""reject_(?:mask|rows)\(\s*[^,()]+,\s*[^,]+,\s*[^,]+,\s*"([a-z_]+)\"""")
    reason_kw = re.compile(r"""reason(?:_range)?="([a-z_]+)\"""")
    for folder in ("pipelines", "gis", "core"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            used |= set(pattern.findall(text)) | set(reason_kw.findall(text))
            used |= set(pattern2.findall(text))
    unknown = {c for c in used if c not in reasons.REASONS}
    assert not unknown, f"codes not in core/delivery/reasons.py: {sorted(unknown)}"


def _command_options(*path: str) -> set[str]:
    from onemap.cli import app

    cmd = get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return {opt for p in cmd.params for opt in getattr(p, "opts", []) if opt.startswith("--")}


#: the commands that read deliveries through core.delivery, and which hints they can raise
READERS = {
    ("tiles", "buildings"): "vector",
    ("tiles", "roads"): "vector",
    ("tiles", "trees"): "vector",
    ("tiles", "furniture"): "vector",
    ("load", "buildings"): "vector",
    ("load", "roads"): "vector",
    ("load", "cameras"): "vector",
    ("load", "checkpoints"): "vector",
    ("load", "geofences"): "vector",
    ("load", "communities"): "vector",
    ("load", "grid"): "vector",
    ("load", "events"): "table",
    ("load", "population"): "table",
    ("load", "workers"): "table",
    ("load", "gps"): "table",
}
#: options the reading errors (core/delivery/read.py, encoding.py) advise, per kind of command
READ_HINT_OPTIONS = {"vector": {"--src-crs", "--encoding", "--layer", "--mapping"},
                     "table": {"--encoding", "--mapping"}}


def _hint_options_in_source() -> set[str]:
    found: set[str] = set()
    for name in ("read.py", "encoding.py", "errors.py", "mapping.py"):
        found |= set(re.findall(r"--[a-z][a-z-]+", (REPO / "core" / "delivery" / name).read_text(encoding="utf-8")))
    return found


def test_reading_hints_name_options_every_reading_command_has() -> None:
    # --id-field etc. are named only when the command passes its own field options to read_layer;
    # --allow-empty is advised by the loaders, which all have it
    advised = _hint_options_in_source() - {"--id-field", "--allow-empty"}
    assert advised <= READ_HINT_OPTIONS["vector"], advised - READ_HINT_OPTIONS["vector"]
    for path in READERS:
        if path[0] == "load":
            assert "--allow-empty" in _command_options(*path), path
    missing = {}
    for path, kind in READERS.items():
        lacking = READ_HINT_OPTIONS[kind] - _command_options(*path)
        if lacking:
            missing[" ".join(path)] = sorted(lacking)
    assert not missing, f"options advised by reading errors but missing on the command: {missing}"


def test_reason_hints_name_real_options() -> None:
    every = set().union(*(_command_options(*p) for p in READERS))
    for r in reasons.REASONS.values():
        for opt in re.findall(r"--[a-z][a-z-]+", r.hint):
            assert opt in every, f"{r.code}: hint names {opt}, which no reading command has"
    # the option a hint names exists on the command that raises it
    assert "--missing-height" in _command_options("tiles", "buildings")
    assert "--id-field" in _command_options("tiles", "buildings")
    assert "--dem" in _command_options("tiles", "furniture")


# ------------------------------------------------------------------------------------ encodings
@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".fgb"])
def test_utf8_formats_never_mojibake(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"names{suffix}"
    _frame().to_file(path)
    layer = read_layer(path, SPECS)
    by_id = dict(zip(layer.report.ids, layer.gdf["name"], strict=True))  # FlatGeobuf reorders
    assert [by_id[f"B{i}"] for i in range(len(NAMES))] == NAMES
    assert not layer.report.rejected


def test_geoparquet_is_utf8(tmp_path: Path) -> None:
    path = tmp_path / "names.parquet"
    _frame().to_parquet(path)
    assert read_layer(path, SPECS).gdf["name"].tolist() == NAMES


@pytest.mark.parametrize("cpg", [True, False])
def test_utf8_shapefile_with_and_without_cpg(tmp_path: Path, cpg: bool) -> None:
    path = tmp_path / "names.shp"
    _frame().to_file(path, encoding="UTF-8")
    if not cpg:
        path.with_suffix(".cpg").unlink(missing_ok=True)
    layer = read_layer(path, SPECS)
    assert layer.gdf["name"].tolist() == NAMES
    assert layer.encoding == "UTF-8"


def test_gbk_shapefile_without_cpg_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "gbk.shp"
    _frame(["解放路", "龙子湖区", "胜利街"]).to_file(path, encoding="GBK")
    path.with_suffix(".cpg").unlink(missing_ok=True)
    layer = read_layer(path, SPECS)
    assert layer.gdf["name"].tolist() == ["解放路", "龙子湖区", "胜利街"]
    assert any("detected as GBK" in n for n in layer.report.notes)


def test_latin1_shapefile_without_cpg_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin.shp"
    _frame(["Straße", "Café"]).to_file(path, encoding="ISO-8859-1")
    path.with_suffix(".cpg").unlink(missing_ok=True)
    with pytest.raises(EncodingError, match="--encoding") as err:
        read_layer(path, SPECS)
    assert "latin.shp" in str(err.value) and "ISO-8859-1" in str(err.value)
    assert read_layer(path, SPECS, encoding="latin-1").gdf["name"].tolist() == ["Straße", "Café"]


def test_wrong_cpg_is_mojibake_error(tmp_path: Path) -> None:
    path = tmp_path / "wrong.shp"
    _frame(["测试路", "Straße"]).to_file(path, encoding="UTF-8")
    path.with_suffix(".cpg").write_text("GBK")
    with pytest.raises(EncodingError, match="--encoding UTF-8"):
        read_layer(path, SPECS)
    assert read_layer(path, SPECS, encoding="UTF-8").gdf["name"].tolist() == ["测试路", "Straße"]


def test_csv_utf8_in_every_script(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    rows = "\n".join(f"P{i},{n},536000,3644000" for i, n in enumerate(NAMES))
    path.write_text("id,name,x,y\n" + rows + "\n", encoding="utf-8")
    assert read_layer(path, SPECS, src_crs="EPSG:4548").gdf["name"].tolist() == NAMES


# ------------------------------------------------------------------------------------ values and coordinates
@pytest.mark.parametrize(("text", "value"), [("3.5", 3.5), ("3,5", 3.5), ("12 m", 12.0), ("6层", 6.0),
                                             ("12.5米", 12.5), ("inf", None), ("nan", None)])
def test_lenient_numbers(text: str, value: float | None) -> None:
    assert parse_number(text)[0] == value


def test_fractional_floors_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "osm.geojson"
    gdf = _frame(["a", "b"]).drop(columns="height")
    gdf["floors"] = ["3.5", "2"]
    gdf.to_file(path)
    layer = read_layer(path, SPECS)
    assert layer.gdf["floors"].tolist() == [3.5, 2.0] and not layer.report.rejected


def test_bad_vertices_reject_their_feature_not_the_layer(tmp_path: Path) -> None:
    from pyproj import CRS

    from core.delivery.accounting import Accounting
    from core.delivery.rules import check_coordinates

    geoms = np.array([shapely.Point(117.4, 32.9), shapely.Point(32.9, 117.4), shapely.Point(500.0, 10.0),
                      shapely.LineString([(117.0, 32.0), (np.nan, 32.1)]), shapely.Point(117.4, 32.9, 5.0)],
                     dtype=object)
    report = Accounting(layer="t", source="t.geojson", ids=np.array(["a", "b", "c", "d", "e"], dtype=object))
    out = check_coordinates(geoms, CRS("EPSG:4326"), report)
    assert {r: i.code for r, i in report.rejected.items()} == {1: "swapped_axes", 2: "out_of_domain",
                                                                3: "invalid_coordinate"}
    assert out[0] is not None and out[4] is not None and not out[4].has_z
    assert "dropped_z" in report.repaired_by_how()
