"""`onemap serve`: the API + viewer under uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    host: str = typer.Option(None, help="Bind address (default settings.host, 127.0.0.1)."),
    port: int = typer.Option(None, help="TCP port (default settings.port, 8000)."),
    tiles: Path = typer.Option(None, help="Tiles folder (default settings.resolved_tiles_dir)."),
    workers: int = typer.Option(1, help="Worker processes (each has its own caches and listener)."),
) -> None:
    import os

    import uvicorn

    from core.settings import get_settings

    settings = get_settings()
    if tiles is not None:
        # Environment, so worker processes (which build their own app) see it too.
        os.environ["ONEMAP_TILES_DIR"] = str(tiles.resolve())
        get_settings.cache_clear()
        settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    tiles_dir = settings.resolved_tiles_dir
    if not tiles_dir.is_dir():
        typer.secho(f"warning: tiles folder {tiles_dir} does not exist (yet); /tiles will answer 404",
                    fg=typer.colors.YELLOW, err=True)
    typer.echo(f"serving http://{host}:{port}/ (tiles {tiles_dir})")
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", proxy_headers=False, access_log=False)
