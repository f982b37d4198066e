"""CLI options shared by several commands, each declared once.

Use them as annotated parameter types; the default (``None`` / ``False``) goes in the signature:

    def roads(src: Path, out: OutDir, dem: DemPath = None, dry_run: DryRun = False) -> None: ...

Every command that reads a delivery takes the same names, the same meaning and the same default:
an omitted option is ``None`` and the library decides (e.g. the district ``boundary.gpkg`` beside
SRC, the CRS the file declares, the encoding its format declares).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

OutDir = Annotated[Path, typer.Option(
    "--out", help="Output folder (published atomically: built in OUT.tmp-<pid>, then swapped in).")]
SrcCrs = Annotated[str | None, typer.Option(
    "--src-crs", help="CRS of a file that declares none (e.g. EPSG:4548).")]
MappingPath = Annotated[Path | None, typer.Option(
    "--mapping", help="YAML field/value mapping of the delivery (fields, values, encoding).")]
BoundaryPath = Annotated[Path | None, typer.Option(
    "--boundary", help="District polygon layer; features outside it are rejected "
                       "(tiles roads/trees/furniture default to boundary.gpkg beside SRC, if any).")]
DryRun = Annotated[bool, typer.Option(
    "--dry-run", help="Read, check and report; publish nothing.")]
DemPath = Annotated[Path | None, typer.Option(
    "--dem", help="DEM GeoTIFF (orthometric heights) for bases and draping.")]
Encoding = Annotated[str | None, typer.Option(
    "--encoding", help="Text encoding of a file whose format declares none (Shapefile without "
                       ".cpg, CSV), e.g. GBK.")]
LayerName = Annotated[str | None, typer.Option(
    "--layer", help="Layer of a multi-layer file (GeoPackage).")]
ReportPath = Annotated[Path | None, typer.Option(
    "--report", help="JSON report path (default var/reports/load-<layer>.json).")]
WaterPath = Annotated[Path | None, typer.Option(
    "--water", help="Water polygons (water.gpkg): flat surfaces at water_level / the terrain watermask.")]
GeoidModel = Annotated[str | None, typer.Option(
    "--geoid", help="Geoid turning orthometric heights into ellipsoidal: egm96 (default), none (heights "
                    "already ellipsoidal) or the PATH of a GTX/GeoTIFF grid (e.g. a national quasi-geoid).")]
AllowEmpty = Annotated[bool, typer.Option(
    "--allow-empty", help="Accept a delivery with no valid row, emptying the live table (refused otherwise).")]
DaskAddress = Annotated[str | None, typer.Option(
    "--dask", help="Run the spatial partitions on Dask distributed: an existing scheduler (tcp://host:8786) or "
                   "local:N (N local worker processes). Default: ONEMAP_DASK_SCHEDULER, else in this process.")]
PartitionLevel = Annotated[int | None, typer.Option(
    "--partition-level", min=0, max=8,
    help="Quadtree level of the spatial partitions (4^level cells; 0 = one piece). Default: from the "
         "feature count (about 10,000 buildings, 1,000 roads or 20,000 trees or furniture a partition).")]
