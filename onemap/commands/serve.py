import typer


def serve(
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    port: int = typer.Option(8000, help="TCP port."),
    tiles: str = typer.Option(None, help="Tiles folder (output of `onemap tiles build`)."),
) -> None:
    raise typer.Exit(2)
