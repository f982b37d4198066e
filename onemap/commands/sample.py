"""`onemap sample ...`: the sample district delivery."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("generate")
def generate(
    out: Path = typer.Option(..., "--out", help="Output folder (clean/ and dirty/ are written inside)."),
    seed: int = typer.Option(7, "--seed", help="Random seed; the same seed gives identical files."),
    scale: int = typer.Option(1, "--scale", help="Lay K x K districts side by side (for benchmarks)."),
    layers: str = typer.Option(
        "all",
        "--layers",
        help="Comma-separated layers to write: admin, buildings, roads, trees, landcover, furniture, facilities, "
        "dem, "
        "pointcloud, ortho, mesh, overlays, dirty (default all; boundary.gpkg is always written).",
    ),
    scale_overlays: bool = typer.Option(
        False,
        "--scale-overlays",
        help="Copy the overlays (workers, cameras, population, events, GPS) with every district copy; "
        "by default they stay one district's worth.",
    ),
) -> None:
    """Generate the Jiefang Street survey delivery (EPSG:4548, orthometric heights)."""
    from data.generator import generate as run
    from data.generator import parse_layers

    try:
        chosen = parse_layers(layers)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--layers") from exc
    summary = run(out, seed=seed, scale=scale, layers=chosen, scale_overlays=scale_overlays)
    for key, value in summary.items():
        typer.echo(f"{key}: {value}")
