"""`onemap load ...`: deliveries into PostGIS, with a report of every rejected row."""

from __future__ import annotations

from pathlib import Path

import typer

from core.settings import get_settings

app = typer.Typer(no_args_is_help=True)

MAPPING_OPT = typer.Option(None, "--mapping", help="YAML field/value mapping of the delivery.")
REPORT_OPT = typer.Option(None, "--report", help="JSON report path (default var/reports/load-<layer>.json).")


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
        typer.secho(f"error: {src} does not exist", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    try:
        report = load_layer(layer, src, mapping=mapping, **options)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    _finish(report, layer, report_path)


@app.command("sample")
def sample(
    directory: Path = typer.Argument(..., help="Sample delivery folder (with clean/)."),
    gps_limit: int = typer.Option(None, "--gps-limit", help="Load only the first N GPS fixes."),
    report_path: Path = REPORT_OPT,
) -> None:
    """Replace every overlay table with a sample delivery, in dependency order, then derive
    shift tracks, check-ins and geofence alarms."""
    from gis.loaders import load_sample

    try:
        report = load_sample(directory, gps_limit=gps_limit)
    except FileNotFoundError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    _finish(report, "sample", report_path)


@app.command("buildings")
def buildings(
    src: Path = typer.Argument(..., help="buildings.gpkg / .shp (the file the tiles are built from)."),
    mapping: Path = MAPPING_OPT,
    boundary: Path = typer.Option(None, "--boundary", help="Reject buildings outside this polygon."),
    report_path: Path = REPORT_OPT,
) -> None:
    """Buildings (ids as in the 3D tiles); grid cell and community assigned spatially."""
    _run("buildings", src, mapping, report_path, **({"boundary": boundary} if boundary else {}))


@app.command("grid")
def grid(
    src: Path = typer.Argument(..., help="grid_cells.gpkg"),
    communities: Path = typer.Option(
        None, "--communities", help="communities.gpkg (default: next to SRC if present)."
    ),
    mapping: Path = MAPPING_OPT,
    report_path: Path = REPORT_OPT,
) -> None:
    """Management grid cells (and the communities they belong to)."""
    from gis.loaders import LoadReport, load_layer

    communities = communities or (src.parent / "communities.gpkg")
    report = LoadReport()
    if communities.exists():
        report.layers += load_layer("communities", communities).layers
    report.layers += load_layer("grid_cells", src, mapping=mapping).layers
    _finish(report, "grid", report_path)


def _simple(layer: str, help_text: str) -> None:
    def command(
        src: Path = typer.Argument(..., help="Delivered file."),
        mapping: Path = MAPPING_OPT,
        report_path: Path = REPORT_OPT,
    ) -> None:
        _run(layer, src, mapping, report_path)

    command.__doc__ = help_text
    app.command(layer.replace("_", "-"))(command)


_simple("events", "Events/cases (replaces the table and its history).")
_simple("population", "Residents (restricted.persons; replaces the table).")
_simple("cameras", "Cameras.")
_simple("roads", "Road centre lines (for patrol coverage).")
_simple("workers", "Grid workers and vehicles, with their GPS devices.")
_simple("checkpoints", "Patrol check-in points.")
_simple("geofences", "Patrol areas and no-parking zones.")
_simple("communities", "Communities (社区).")


@app.command("gps")
def gps(
    src: Path = typer.Argument(..., help="gps_fixes.parquet or .csv"),
    mapping: Path = MAPPING_OPT,
    replace: bool = typer.Option(False, "--replace", help="Truncate gps_fixes first (default: append)."),
    limit: int = typer.Option(None, "--limit", help="Load only the first N rows."),
    report_path: Path = REPORT_OPT,
) -> None:
    """GPS fixes (appended; already loaded fixes are reported as duplicates). Run `onemap load derive`
    afterwards to rebuild shift tracks, check-ins and alarms."""
    _run("gps", src, mapping, report_path, replace=replace, limit=limit)


@app.command("derive")
def derive() -> None:
    """Rebuild latest positions, shift tracks, check-ins and geofence alarms from all fixes."""
    from gis.loaders import connect
    from gis.loaders.derive import derive_all

    with connect() as conn:
        out = derive_all(conn)
    for key, value in out.items():
        typer.echo(f"{key}: {value}")
