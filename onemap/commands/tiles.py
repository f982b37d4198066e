"""`onemap tiles ...`: survey data → Cesium 3D Tiles.

One function per command, each in its own section; commands only parse options, call a
pipeline and print a summary. Shared CLI helpers are at the top.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import InputError, OnemapError
from core.frames import using_geoid
from onemap.commands.options import (
    BoundaryPath,
    DaskAddress,
    DemPath,
    DryRun,
    Encoding,
    GeoidModel,
    LayerName,
    MappingPath,
    OutDir,
    PartitionLevel,
    SrcCrs,
    WaterPath,
)

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)


# ============================================================================ shared helpers
@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar driven by a pipeline's ``progress(stage, done, total)`` callback."""
    with Progress(TextColumn("[bold]{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        yield update


def print_summary(title: str, summary: dict[str, Any], report_txt: Path | None) -> None:
    table = Table(title=title, show_header=False)
    for key, value in summary.items():
        if isinstance(value, int) and key.endswith("bytes"):
            value = f"{value:,} ({value / 1e6:.2f} MB)"
        table.add_row(key, str(value))
    console.print(table)
    if report_txt is not None:
        console.print(f"report: {report_txt}")


def _check_compress(compress: str) -> None:
    from tiles.gltf import COMPRESSIONS

    if compress not in COMPRESSIONS:
        raise typer.BadParameter(f"{compress!r}: give one of {', '.join(COMPRESSIONS)}", param_hint="--compress")


def as_input_error(exc: Exception) -> InputError:
    """A library error that is not yet a :class:`core.errors.OnemapError`, as one (onemap/cli.py
    prints it and exits 1)."""
    return exc if isinstance(exc, InputError) else InputError(str(exc))


# ============================================================================ buildings
def _lod_major(lod: str) -> int:
    try:
        major = int(float(lod))
    except ValueError:
        major = 0
    if major not in (1, 2):
        raise typer.BadParameter(f"{lod!r}: give 1, 2 or a CityJSON LOD such as 1.2, 1.3, 2.2", param_hint="--lod")
    return major


@app.command("buildings")
def buildings(
    src: Annotated[Path, typer.Argument(help="Footprints: GeoPackage, Shapefile, GeoJSON, FlatGeobuf, CSV.")],
    out: OutDir,
    id_field: str = typer.Option(None, "--id-field", help="Source field of the stable building id."),
    height_field: str = typer.Option(None, "--height-field", help="Source field of the height (m)."),
    floors_field: str = typer.Option(None, "--floors-field", help="Source field of the number of floors."),
    roof_field: str = typer.Option(None, "--roof-field", help="Source field of the roof type."),
    floor_height: float = typer.Option(3.0, "--floor-height", help="Metres per floor when no height."),
    src_crs: SrcCrs = None,
    dem: DemPath = None,
    geoid: GeoidModel = None,
    encoding: Encoding = None,
    mapping: MappingPath = None,
    boundary: BoundaryPath = None,
    layer: LayerName = None,
    lod: str = typer.Option("2", "--lod", help="Leaf level of detail: 1 prisms, 2 roofs; for CityJSON also "
                                               "the LOD to keep when several exist (e.g. 1.3, 2.2)."),
    max_features: int = typer.Option(1000, "--max-features", help="Buildings per tile at most."),
    missing_height: str = typer.Option("reject", "--missing-height",
                                       help="No height and no floors: 'reject' or 'default'."),
    default_height: float = typer.Option(9.0, "--default-height",
                                         help="Height used by --missing-height default."),
    dry_run: DryRun = False,
    dask: DaskAddress = None,
    partition_level: PartitionLevel = None,
    compress: str = typer.Option("none", "--compress", help="Mesh compression of the glb tiles: none or draco "
                                 "(KHR_draco_mesh_compression; the report gives bytes per building both ways)."),
) -> None:
    """Footprints → LOD1/LOD2 buildings as a 3D Tiles 1.1 tileset (per-building metadata)."""
    from core.delivery.accounting import REPORT_TXT
    from pipelines.buildings import BuildingOptions, build_buildings
    from tiles.gltf import COMPRESSIONS

    if missing_height not in ("reject", "default"):
        raise typer.BadParameter("--missing-height must be 'reject' or 'default'")
    if compress not in COMPRESSIONS:
        raise typer.BadParameter(f"{compress!r}: give one of {', '.join(COMPRESSIONS)}", param_hint="--compress")
    options = BuildingOptions(
        fields={"id": id_field, "height": height_field, "floors": floors_field, "roof_type": roof_field},
        mapping=mapping, encoding=encoding, src_crs=src_crs, layer=layer, dem=dem, boundary=boundary,
        floor_height=floor_height, missing_height=missing_height,  # type: ignore[arg-type]
        default_height=default_height, lod=_lod_major(lod), lod_pick=lod if "." in lod else None,
        max_features=max_features, dry_run=dry_run, geoid=geoid, dask=dask, partition_level=partition_level,
        compress=compress,
    )
    with progress_bar() as progress:  # core.errors (SourceError, DemError, ...) reach onemap/cli.py
        result = build_buildings(src, None if dry_run else out, options, progress)
    if dry_run:
        console.print(result.report.summary_text(max_lines=20))
    print_summary("buildings" + (" (dry run)" if dry_run else ""), result.summary(),
                  None if dry_run else out / REPORT_TXT)


# ============================================================================ roads / trees / furniture
@app.command("roads")
def roads(
    src: Annotated[Path, typer.Argument(help="Road centrelines (roads.gpkg: id, name, class, width, "
                                         "lanes, bridge, deck_height).")],
    out: OutDir,
    dem: DemPath = None,
    geoid: GeoidModel = None,
    mapping: MappingPath = None,
    src_crs: SrcCrs = None,
    encoding: Encoding = None,
    layer: LayerName = None,
    boundary: BoundaryPath = None,
    dry_run: DryRun = False,
    dask: DaskAddress = None,
    partition_level: PartitionLevel = None,
) -> None:
    """Centrelines + widths → draped road surfaces (disjoint at junctions) and bridge decks."""
    from core.delivery.accounting import REPORT_TXT
    from pipelines.roads import RoadOptions, build_roads

    options = RoadOptions(dem=dem, boundary=boundary, mapping=mapping, src_crs=src_crs, encoding=encoding,
                          layer=layer, geoid=geoid, dry_run=dry_run, dask=dask, partition_level=partition_level)
    with progress_bar() as progress:
        result = build_roads(src, out, options, progress)
    print_summary("roads" + (" (dry run)" if dry_run else ""),
                  {**result.report.counts, **result.report.output}, out / REPORT_TXT)


@app.command("trees")
def trees(
    src: Annotated[Path, typer.Argument(help="Tree points (trees.gpkg: id, species, height, "
                                         "crown_diameter, setting).")],
    out: OutDir,
    dem: DemPath = None,
    geoid: GeoidModel = None,
    green: Path = typer.Option(None, "--green", help="Green-space polygons (green.gpkg) to drape."),
    water: WaterPath = None,
    mapping: MappingPath = None,
    src_crs: SrcCrs = None,
    encoding: Encoding = None,
    layer: LayerName = None,
    boundary: BoundaryPath = None,
    dry_run: DryRun = False,
    dask: DaskAddress = None,
    partition_level: PartitionLevel = None,
) -> None:
    """Trees → instanced billboards; green spaces and water → draped surfaces (one vegetation tileset)."""
    from pipelines.vegetation import VegetationOptions, build_vegetation

    options = VegetationOptions(dem=dem, green=green, water=water, boundary=boundary, mapping=mapping,
                                src_crs=src_crs, encoding=encoding, layer=layer, geoid=geoid,
                                dry_run=dry_run, dask=dask, partition_level=partition_level)
    with progress_bar() as progress:
        result = build_vegetation(src, out, options, progress)
    for rep in result.reports:
        print_summary(rep.layer + (" (dry run)" if dry_run else ""), {**rep.counts, **rep.output}, None)
    console.print(f"report: {out / 'report.txt'}")


@app.command("furniture")
def furniture(
    src: Annotated[Path, typer.Argument(help="Furniture points (furniture.gpkg: id, type, heading, "
                                         "height, name).")],
    out: OutDir,
    dem: DemPath = None,
    geoid: GeoidModel = None,
    mapping: MappingPath = None,
    src_crs: SrcCrs = None,
    encoding: Encoding = None,
    layer: LayerName = None,
    boundary: BoundaryPath = None,
    dry_run: DryRun = False,
    dask: DaskAddress = None,
    partition_level: PartitionLevel = None,
) -> None:
    """Street furniture → instanced schematic models at exact positions and headings."""
    from core.delivery.accounting import REPORT_TXT
    from pipelines.furniture import FurnitureOptions, build_furniture

    options = FurnitureOptions(dem=dem, boundary=boundary, mapping=mapping, src_crs=src_crs, encoding=encoding,
                               layer=layer, geoid=geoid, dry_run=dry_run, dask=dask,
                               partition_level=partition_level)
    with progress_bar() as progress:
        result = build_furniture(src, out, options, progress)
    print_summary("furniture" + (" (dry run)" if dry_run else ""),
                  {**result.report.counts, **result.report.output}, out / REPORT_TXT)


# ============================================================================ build (whole district)
@app.command("build")
def build(
    sample: Path = typer.Option(..., "--sample", help="Delivery folder (holds clean/), e.g. var/sample."),
    out: Path = typer.Option(..., "--out", help="Tiles folder: <layer>/tileset.json, terrain/, index.json."),
    layers: str = typer.Option(",".join(("buildings", "roads", "vegetation", "furniture", "pointcloud",
                                         "terrain", "imagery", "mesh")), "--layers",
                               help="Comma-separated subset of layers."),
    geoid: GeoidModel = None,
    dask: DaskAddress = None,
    partition_level: PartitionLevel = None,
    compress: str = typer.Option("none", "--compress", help="Compression of the reality-mesh glb tiles: none or "
                                 "draco (KHR_draco_mesh_compression). The other layers are written as before."),
) -> None:
    """Build every layer of the district (buildings, roads, vegetation, furniture, point cloud, terrain,
    imagery, reality mesh)."""
    from pipelines.district import LAYERS, build_district

    wanted = tuple(x.strip() for x in layers.split(",") if x.strip())
    _check_compress(compress)
    unknown = sorted(set(wanted) - set(LAYERS))
    if unknown:
        raise typer.BadParameter(f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(LAYERS)}",
                                 param_hint="--layers")
    try:
        with using_geoid(geoid), progress_bar() as progress:
            catalog = build_district(sample, out, layers=wanted, progress=progress, dask=dask,
                                     partition_level=partition_level, mesh_compress=compress)
    except FileNotFoundError as exc:
        raise as_input_error(exc) from exc
    table = Table(title=f"district tiles → {out}")
    for col in ("layer", "features", "rejected", "MB", "seconds", "status"):
        table.add_column(col)
    for entry in catalog["layers"]:
        features = entry.get("features")
        table.add_row(entry["name"], f"{features:,}" if isinstance(features, int) else "?",
                      str(entry.get("rejected", "")), f"{entry['bytes'] / 1e6:.1f}",
                      str(entry.get("build_seconds", "")), "stale" if entry.get("stale") else "ok")
    console.print(table)
    console.print(f"catalog: {out / 'index.json'} ({catalog['build_seconds']} s)")
    if catalog["failed"]:
        failed = "; ".join(f"{f['name']}: {f['error']}" for f in catalog["failed"])
        raise OnemapError(f"{len(catalog['failed'])} layer(s) failed, previous tiles kept: {failed}")


# ============================================================================ imagery
@app.command("imagery")
def imagery(
    ortho: Annotated[Path, typer.Argument(help="Orthophoto GeoTIFF (RGB, any CRS; a COG reads fastest).")],
    out: OutDir,
    scheme: str = typer.Option("WorldCRS84Quad", "--scheme",
                               help="WorldCRS84Quad (Cesium GeographicTilingScheme) or WebMercatorQuad."),
    fmt: str = typer.Option("webp", "--format", help="Tile format: webp or png (both with transparency)."),
    minzoom: int = typer.Option(None, "--min-zoom", min=0, max=24, help="Coarsest level (default: <= 4 tiles)."),
    maxzoom: int = typer.Option(None, "--max-zoom", min=0, max=24, help="Finest level (default: source res)."),
) -> None:
    """Orthophoto → offline imagery pyramid (TMS + tilemapresource.xml + imagery.json) for Cesium."""
    from pipelines.imagery import ImageryOptions, build_imagery

    with progress_bar() as progress:
        result = build_imagery(ortho, out, ImageryOptions(scheme=scheme, fmt=fmt, minzoom=minzoom,
                                                          maxzoom=maxzoom), progress)
    print_summary("imagery", {
        "tiles": result.info.tiles, "levels": f"{result.info.minzoom}..{result.info.maxzoom}",
        "scheme": result.info.scheme, "format": result.info.fmt, "bytes": result.info.bytes,
        "seconds": round(result.seconds, 1), "reused": result.reused,
        "tilemapresource.xml": out / "tilemapresource.xml",
    }, None)


# ============================================================================ mesh
@app.command("mesh")
def mesh(
    src: Annotated[Path, typer.Argument(help="OBJ export folder (metadata.xml + Data/Tile_*/) or one "
                                             "OBJ/PLY/glTF file.")],
    out: OutDir,
    src_crs: str = typer.Option(None, "--src-crs", help="CRS of a single mesh file (e.g. EPSG:4548)."),
    origin: str = typer.Option(None, "--origin", help="X,Y,Z added to a single file's vertices (source CRS, "
                                                       "orthometric z)."),
    leaf_size: float = typer.Option(100.0, "--leaf-size", min=1.0, help="Leaf cell size of a single file, m."),
    ratio: float = typer.Option(0.25, "--ratio", min=0.01, max=0.9, help="Triangles kept per level up."),
    geoid: GeoidModel = None,
    compress: str = typer.Option("none", "--compress", help="Mesh compression of the glb tiles: none or draco "
                                 "(KHR_draco_mesh_compression; the report gives geometry bytes per triangle both "
                                 "ways)."),
) -> None:
    """Reality mesh (oblique photogrammetry) → 3D Tiles 1.1: textured glb, simplified LOD
    hierarchy with measured geometric errors, geoid-correct placement."""
    from pipelines.mesh import MeshOptions, build_mesh

    _check_compress(compress)
    with progress_bar() as progress:
        result = build_mesh(src, out, MeshOptions(src_crs=src_crs, origin=origin, leaf_size=leaf_size,
                                                  ratio=ratio, geoid=geoid, compress=compress), progress)
    print_summary("mesh", {
        "leaves": result.leaves, "tiles": result.tiles, "reused": result.tiles_reused,
        "triangles in": result.triangles_in,
        "triangles per level": ", ".join(f"{k}: {v:,}" for k, v in sorted(result.triangles_out.items())),
        "error per level (m)": ", ".join(f"{k}: {v:.2f}" for k, v in sorted(result.errors_m.items())),
        "bytes": result.bytes, "gzip bytes": result.gzip_bytes, "compress": result.compress,
        "leaf bytes/triangle (with textures)": round(result.bytes_leaves_per_triangle(), 1),
        "leaf geometry bytes/triangle": f"{result.geometry_bytes_per_triangle():.1f} "
                                        f"(uncompressed {result.geometry_bytes_per_triangle(plain=True):.1f})",
        "seconds": round(result.seconds, 1), "tileset": out / "tileset.json",
    }, out / "report.json")


# ============================================================================ terrain / pointcloud / validate
@app.command("terrain")
def terrain(
    dem: Annotated[Path, typer.Argument(help="DEM GeoTIFF (band 1, orthometric heights, any CRS).")],
    out: OutDir,
    water: WaterPath = None,
    max_level: int = typer.Option(None, "--max-level", min=0, max=22,
                                  help="Finest level (default: matches the DEM resolution; 15 for 2 m)."),
    max_error: float = typer.Option(0.25, "--max-error", min=0.001,
                                    help="Meshing tolerance at the finest level, metres."),
    geoid: GeoidModel = None,
) -> None:
    """DEM → Cesium quantized-mesh terrain (ellipsoidal heights, octvertexnormals + watermask)."""
    from pipelines.terrain import TerrainOptions, build_terrain

    try:
        with using_geoid(geoid), progress_bar() as progress:
            result = build_terrain(dem, out, TerrainOptions(water=water, max_level=max_level,
                                                            max_error=max_error), progress)
    except (ValueError, OSError) as exc:  # not yet core.errors: rasterio/OS failures
        raise as_input_error(exc) from exc
    print_summary("terrain", {
        "tiles": result.tiles, "levels": f"0..{result.max_level}", "bytes": result.bytes,
        "seconds": round(result.seconds, 1),
        "heights (ellipsoidal)": "{:.2f}..{:.2f} m".format(*result.height_range_ellipsoidal),
        "layer.json": out / "layer.json",
    }, None)


@app.command("pointcloud")
def pointcloud(
    las: Annotated[Path, typer.Argument(help="LAS/LAZ point cloud (orthometric z).")],
    out: OutDir,
    src_crs: SrcCrs = None,
    jobs: int = typer.Option(2, "--jobs", min=1, help="py3dtiles worker processes."),
    geoid: GeoidModel = None,
) -> None:
    """LAS/LAZ → 3D Tiles pnts (ECEF; z + EGM96 geoid applied before py3dtiles)."""
    from pipelines.pointcloud import PointCloudOptions, build_pointcloud

    try:
        with using_geoid(geoid), progress_bar() as progress:
            result = build_pointcloud(las, out, PointCloudOptions(src_crs=src_crs, jobs=jobs), progress)
    except OSError as exc:
        raise as_input_error(exc) from exc
    print_summary("pointcloud", {
        "points": result.points, "crs in": result.crs_in, "tiles": result.tiles,
        "geoid N added": "{:.2f}..{:.2f} m".format(*result.geoid_range), "seconds": round(result.seconds, 1),
        "tileset": out / "tileset.json",
    }, None)


@app.command("validate")
def validate(
    path: Annotated[Path, typer.Argument(help="Folder (every tileset.json / layer.json under it) or one file.")],
    dem: DemPath = None,
    no_gltf: bool = typer.Option(False, "--no-gltf", help="Skip the Khronos glTF validator."),
    max_issues: int = typer.Option(50, "--max-issues", help="Issues to print (all are counted)."),
) -> None:
    """Validate 3D Tiles (schema, geometric errors, URIs, headers, content in volumes, glb,
    metadata counts) and quantized-mesh terrain. Exit code 1 on errors."""
    from rich.text import Text

    from tiles.validate import validate_path

    height_range = None
    if dem is not None:
        from pipelines.dem import ellipsoidal_height_range

        height_range = ellipsoidal_height_range(dem)
    report = validate_path(path, gltf=not no_gltf, height_range=height_range)
    colours = {"error": "red", "warning": "yellow", "info": "cyan"}
    for issue in report.issues[:max_issues]:
        line = Text(f"{issue.severity:7s}", style=colours[issue.severity])
        line.append(f" {issue.file}: {issue.message}")  # plain text: messages hold [brackets]
        console.print(line, highlight=False)
    if len(report.issues) > max_issues:
        console.print(f"… {len(report.issues) - max_issues} more issues")
    console.print(report.summary(), highlight=False)
    if not report.ok:
        raise typer.Exit(1)
