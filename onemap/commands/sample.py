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
) -> None:
    """Generate the Jiefang Street survey delivery (EPSG:4548, orthometric heights)."""
    from data.generator import generate as run

    summary = run(out, seed=seed, scale=scale)
    for key, value in summary.items():
        typer.echo(f"{key}: {value}")
