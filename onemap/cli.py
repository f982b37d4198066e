"""The single ``onemap`` command; each subcommand group lives in ``onemap/commands/``."""

from __future__ import annotations

import logging
import os

import typer

from onemap.commands import db, load, sample, serve, tiles, users

app = typer.Typer(help="onemap: 3D one-map server for Jiefang Street, Bengbu.", no_args_is_help=True)
app.add_typer(db.app, name="db", help="Embedded PostGIS cluster and migrations.")
app.add_typer(sample.app, name="sample", help="Sample district delivery.")
app.add_typer(tiles.app, name="tiles", help="Survey data -> Cesium 3D Tiles.")
app.add_typer(load.app, name="load", help="Load deliveries into PostGIS.")
app.add_typer(users.app, name="users", help="API users and bearer tokens.")
app.command("serve", help="Serve the API and viewer.")(serve.serve)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else os.environ.get("ONEMAP_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


if __name__ == "__main__":
    app()
