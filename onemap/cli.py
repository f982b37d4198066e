"""The single ``onemap`` command; each subcommand group lives in ``onemap/commands/``.

Exit codes, one convention for every command:

* 0 success;
* 1 any error: an :class:`core.errors.OnemapError` prints ``error: <message>`` (and its hint)
  on stderr, no traceback (``-v`` adds it to the log);
* 2 usage errors (unknown option, bad value), from click/typer.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click
import typer
from typer.core import TyperGroup

from core.errors import OnemapError
from onemap.commands import db, dispatch, load, sample, serve, simulate, tiles, users

log = logging.getLogger("onemap")

EXIT_ERROR = 1
EXIT_USAGE = 2


def report_error(exc: OnemapError) -> None:
    """``error: <message>`` (and ``hint: ...``) on stderr."""
    typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
    if exc.hint:
        typer.secho(f"hint: {exc.hint}", err=True)
    log.debug("error details", exc_info=exc)


class OnemapGroup(TyperGroup):
    """The root group: maps every :class:`OnemapError` raised by a command to exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OnemapError as exc:
            report_error(exc)
            raise typer.Exit(EXIT_ERROR) from None  # typer vendors click: its own Exit class


app = typer.Typer(cls=OnemapGroup, help="onemap: 3D one-map server for Jiefang Street, Bengbu.",
                  no_args_is_help=True)
app.add_typer(db.app, name="db", help="Embedded PostGIS cluster and migrations.")
app.add_typer(sample.app, name="sample", help="Sample district delivery.")
app.add_typer(tiles.app, name="tiles", help="Survey data -> Cesium 3D Tiles.")
app.add_typer(load.app, name="load", help="Load deliveries into PostGIS.")
app.add_typer(users.app, name="users", help="API users and bearer tokens.")
app.add_typer(dispatch.app, name="dispatch", help="Dispatch administration (priority deadlines).")
app.command("serve", help="Serve the API and viewer.")(serve.serve)
app.command("simulate", help="Drive a living day through the HTTP API (devices, residents, operators).")(
    simulate.simulate)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else os.environ.get("ONEMAP_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # INFO lines nobody reads: pyogrio's "Created N records" for every layer written (hundreds
        # per sample), httpx's line per request (`onemap simulate`: ~950,000 a day for 50 devices)
        for name in ("pyogrio", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main() -> None:
    """Console entry point (``onemap``)."""
    app()


if __name__ == "__main__":
    main()
