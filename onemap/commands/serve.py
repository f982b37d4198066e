"""`onemap serve`: the API + viewer under uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    host: str = typer.Option(None, help="Bind address (default settings.api.host, 127.0.0.1)."),
    port: int = typer.Option(None, help="TCP port (default settings.api.port, 8000)."),
    tiles: Path = typer.Option(None, help="Tiles folder (default settings.tiles.tiles_dir, var/tiles)."),
    workers: int = typer.Option(1, min=1, help="Worker processes (each has its own caches and listener)."),
) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from api.app import AppFactory
    from core.errors import ConfigError
    from core.settings import get_settings

    settings = get_settings()
    host = host or settings.api.host
    port = port or settings.api.port
    tiles_dir = tiles.resolve() if tiles is not None else settings.tiles.tiles_dir
    if not tiles_dir.is_dir():
        typer.secho(f"warning: tiles folder {tiles_dir} does not exist (yet); /tiles will answer 404",
                    fg=typer.colors.YELLOW, err=True)
    typer.echo(f"serving http://{host}:{port}/ (tiles {tiles_dir})")
    # The tiles folder goes to the app factory explicitly; the factory object is pickled into
    # each worker process, which builds its own app from it.
    config = uvicorn.Config(AppFactory(tiles_dir=tiles_dir), factory=True, host=host, port=port,
                            workers=workers, log_level="info", proxy_headers=False, access_log=False)
    server = uvicorn.Server(config)
    if workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server.run()
    if not server.started:
        raise ConfigError(f"the server did not start on {host}:{port}", hint="see the log above (port in use?)")
