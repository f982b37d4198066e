"""`onemap load ...`: deliveries into PostGIS, with a report of every rejected row."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.errors import NotFoundError
from core.settings import get_settings
from onemap.commands.options import (
    AllowEmpty,
    BoundaryPath,
    Encoding,
    LayerName,
    MappingPath,
    ReportPath,
    SrcCrs,
)

app = typer.Typer(no_args_is_help=True)

def _finish(report: object, name: str, report_path: Path | None) -> None:
    from gis.loaders.report import LoadReport

    assert isinstance(report, LoadReport)
    path = report_path or (get_settings().var_dir / "reports" / f"load-{name}.json")
    report.write_json(path)
    for line in report.summary_lines():
        typer.echo(line)
    typer.echo(f"report: {path}")


def _run(layer: str, src: Path, mapping: Path | None, report_path: Path | None, **options: object) -> None:
    from gis.loaders import load_layer

    if not src.exists():
        raise NotFoundError(f"{src} does not exist")
    report = load_layer(layer, src, mapping=mapping, **options)
    _finish(report, layer, report_path)


@app.command("sample")
def sample(
    directory: Annotated[Path, typer.Argument(help="Sample delivery folder (with clean/).")],
    gps_limit: Annotated[int | None, typer.Option("--gps-limit", help="Load only the first N GPS fixes.")] = None,
    report_path: ReportPath = None,
) -> None:
    """Replace every overlay table with a sample delivery, in dependency order, then derive
    shift tracks, check-ins and geofence alarms."""
    from gis.loaders import load_sample

    try:
        report = load_sample(directory, gps_limit=gps_limit)
    except FileNotFoundError as exc:
        raise NotFoundError(str(exc)) from exc
    _finish(report, "sample", report_path)


@app.command("buildings")
def buildings(
    src: Annotated[Path, typer.Argument(help="buildings.gpkg / .shp (the file the tiles are built from).")],
    mapping: MappingPath = None,
    boundary: BoundaryPath = None,
    layer: LayerName = None,
    src_crs: SrcCrs = None,
    encoding: Encoding = None,
    allow_empty: AllowEmpty = False,
    report_path: ReportPath = None,
) -> None:
    """Buildings (ids as in the 3D tiles); grid cell and community assigned spatially."""
    _run("buildings", src, mapping, report_path, layer_name=layer, src_crs=src_crs, encoding=encoding,
         allow_empty=allow_empty, **({"boundary": boundary} if boundary else {}))


@app.command("grid")
def grid(
    src: Annotated[Path, typer.Argument(help="grid_cells.gpkg")],
    communities: Annotated[Path | None, typer.Option(
        "--communities", help="communities.gpkg (default: next to SRC if present).")] = None,
    mapping: MappingPath = None,
    layer: LayerName = None,
    src_crs: SrcCrs = None,
    encoding: Encoding = None,
    allow_empty: AllowEmpty = False,
    report_path: ReportPath = None,
) -> None:
    """Management grid cells (and the communities they belong to)."""
    from gis.loaders import LoadReport, load_layer

    communities = communities or (src.parent / "communities.gpkg")
    report = LoadReport()
    if communities.exists():
        report.layers += load_layer("communities", communities, src_crs=src_crs, encoding=encoding,
                                    allow_empty=allow_empty).layers
    report.layers += load_layer("grid_cells", src, mapping=mapping, layer_name=layer, src_crs=src_crs,
                                encoding=encoding, allow_empty=allow_empty).layers
    _finish(report, "grid", report_path)


def _simple_vector(layer: str, help_text: str) -> None:
    def command(
        src: Annotated[Path, typer.Argument(help="Delivered vector file (GeoPackage, Shapefile, GeoJSON, ...).")],
        mapping: MappingPath = None,
        layer_name: LayerName = None,
        src_crs: SrcCrs = None,
        encoding: Encoding = None,
        allow_empty: AllowEmpty = False,
        report_path: ReportPath = None,
    ) -> None:
        _run(layer, src, mapping, report_path, layer_name=layer_name, src_crs=src_crs, encoding=encoding,
             allow_empty=allow_empty)

    command.__doc__ = help_text
    app.command(layer.replace("_", "-"))(command)


def _simple_table(layer: str, help_text: str) -> None:
    def command(
        src: Annotated[Path, typer.Argument(help="Delivered table (CSV or Parquet).")],
        mapping: MappingPath = None,
        encoding: Encoding = None,
        allow_empty: AllowEmpty = False,
        report_path: ReportPath = None,
    ) -> None:
        _run(layer, src, mapping, report_path, encoding=encoding, allow_empty=allow_empty)

    command.__doc__ = help_text
    app.command(layer.replace("_", "-"))(command)


_simple_table("events", "Events/cases (replaces the table and its history).")
_simple_table("population", "Residents (restricted.persons; replaces the table).")
_simple_vector("cameras", "Cameras.")
_simple_vector("roads", "Road centre lines (for patrol coverage).")
_simple_table("workers", "Grid workers and vehicles, with their GPS devices.")
_simple_vector("checkpoints", "Patrol check-in points.")
_simple_vector("geofences", "Patrol areas and no-parking zones.")
_simple_vector("communities", "Communities (社区).")
_simple_vector("facilities", "Service facilities (service stations/terminals, elderly care, clinics, schools, "
               "police posts, convenience stores); after buildings and communities.")


@app.command("gps")
def gps(
    src: Annotated[Path, typer.Argument(help="gps_fixes/ (a folder of month files), gps_fixes.parquet or .csv")],
    mapping: MappingPath = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Replace every fix: new month tables, swapped in at the end (default: append).")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="Load only the first N rows.")] = None,
    encoding: Encoding = None,
    allow_empty: AllowEmpty = False,
    report_path: ReportPath = None,
) -> None:
    """GPS fixes (appended; already loaded fixes are reported as duplicates). Run `onemap load derive`
    afterwards to rebuild shift tracks, check-ins and alarms."""
    _run("gps", src, mapping, report_path, replace=replace, limit=limit, encoding=encoding,
         allow_empty=allow_empty)


_simple_table("surveys", "Resident satisfaction surveys (community_id, period, topic, respondents, satisfied); "
              "replaces the periods the delivery holds.")


@app.command("care")
def care(
    src: Annotated[Path, typer.Argument(help="care_households.csv (pseudonymous households; restricted tables).")],
    visits: Annotated[Path | None, typer.Option(
        "--visits", help="Visit history CSV (default: care_visits.csv beside SRC, if present).")] = None,
    mapping: MappingPath = None,
    encoding: Encoding = None,
    allow_empty: AllowEmpty = False,
    report_path: ReportPath = None,
) -> None:
    """Care households (replaced) and their visits (appended; visits already recorded are kept once),
    into the restricted schema as the owner. After buildings and workers."""
    from gis.loaders import LoadReport, load_layer

    if not src.exists():
        raise NotFoundError(f"{src} does not exist")
    visits = visits or (src.parent / "care_visits.csv")
    report = LoadReport()
    report.layers += load_layer("care_households", src, mapping=mapping, encoding=encoding,
                                allow_empty=allow_empty).layers
    if visits.exists():
        report.layers += load_layer("care_visits", visits, encoding=encoding, allow_empty=allow_empty).layers
    _finish(report, "care", report_path)


@app.command("dem")
def dem(
    src: Annotated[Path, typer.Argument(help="DEM GeoTIFF (orthometric heights, e.g. clean/dem.tif).")],
    report_path: ReportPath = None,
) -> None:
    """The DEM as a coarse height grid in PostGIS (dem_rows): ground heights for camera line of
    sight and for CZML/live positions on the terrain. Readers keep the previous grid until commit."""
    _run("dem", src, None, report_path)


@app.command("derive")
def derive() -> None:
    """Rebuild latest positions, shift tracks, check-ins and geofence alarms from all fixes."""
    from gis.loaders import connect
    from gis.loaders.derive import derive_all

    with connect() as conn:
        out = derive_all(conn)
    for key, value in out.items():
        typer.echo(f"{key}: {value}")
