"""`onemap db ...`: the embedded PostGIS (or the one ONEMAP_DATABASE_URL names)."""

from __future__ import annotations

import json

import typer

from core.errors import InputError
from core.settings import get_settings
from gis import db as gisdb
from gis import migrate
from gis.cluster import EmbeddedCluster

app = typer.Typer(no_args_is_help=True)


@app.command("up")
def up(migrations: bool = typer.Option(True, "--migrate/--no-migrate", help="Apply migrations.")) -> None:
    """Initialise (first time) and start the embedded cluster, create the database, migrate."""
    settings = get_settings()
    if gisdb.uses_external(settings):
        typer.echo("ONEMAP_DATABASE_URL is set: using that PostGIS, not starting var/pg")
        _ensure_postgis(gisdb.libpq_url(settings))
    else:
        cluster = EmbeddedCluster(settings)
        cluster.up()
        typer.echo(f"PostgreSQL running on 127.0.0.1:{cluster.port} (data {cluster.data_dir})")
        typer.echo(f"passwords of postgres / onemap_owner / onemap_api: {cluster.secrets_file} (mode 0600); "
                   "`onemap db psql` opens psql as onemap_owner")
    if migrations:
        migrate.upgrade(gisdb.database_url(settings))
        typer.echo("migrations applied")


def _ensure_postgis(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")


@app.command("down")
def down() -> None:
    """Stop the embedded cluster (data is kept)."""
    settings = get_settings()
    if gisdb.uses_external(settings):
        typer.echo("ONEMAP_DATABASE_URL is set: nothing to stop")
        return
    cluster = EmbeddedCluster(settings)
    was_running = cluster.running()
    cluster.stop()
    typer.echo("stopped" if was_running else "not running")


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Tell whether the database is up, and its PostgreSQL and PostGIS versions. Exit 1 if down."""
    from sqlalchemy import text

    settings = get_settings()
    info: dict[str, object] = {"external": gisdb.uses_external(settings)}
    if not info["external"]:
        cluster = EmbeddedCluster(settings)
        info.update({"initialised": cluster.initialised(), "running": cluster.running(),
                     "port": cluster.port, "data_dir": str(cluster.data_dir)})
    info["reachable"] = False
    try:
        engine = gisdb.get_engine(settings)
        with engine.connect() as conn:
            info["server_version"] = conn.execute(text("SHOW server_version")).scalar_one()
            info["postgis_version"] = conn.execute(text("SELECT postgis_full_version()")).scalar_one().split('"')[1]
        info["reachable"] = True
        info["migrations_current"] = sorted(migrate.current_revisions(gisdb.database_url(settings)))
        info["migrations_pending"] = migrate.pending(gisdb.database_url(settings))
    except Exception as exc:  # noqa: BLE001 - status reports any failure
        info["error"] = str(exc).splitlines()[0]
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        if info["reachable"]:
            where = "external" if info["external"] else f"embedded, 127.0.0.1:{info.get('port')}"
            typer.echo(f"running ({where}): PostgreSQL {info['server_version']}, PostGIS {info['postgis_version']}")
            typer.echo(f"migrations: {', '.join(info['migrations_current']) or 'none'}"
                       f"{' (pending upgrades)' if info['migrations_pending'] else ' (up to date)'}")
        else:
            state = "not initialised" if not info.get("initialised", True) else "not running"
            typer.echo(f"down: {state}" + (f" ({info['error']})" if "error" in info and info.get("running") else ""))
    if not info["reachable"]:
        raise typer.Exit(1)  # the report above is the message; exit 1 like every error


@app.command("url")
def url(libpq: bool = typer.Option(False, "--libpq", help="Plain postgresql:// URL instead of SQLAlchemy's.")) -> None:
    """Print the SQLAlchemy URL of the database."""
    typer.echo(gisdb.libpq_url() if libpq else gisdb.database_url())


@app.command("migrate")
def migrate_cmd(target: str = typer.Argument("heads", help="Alembic target revision.")) -> None:
    """Apply Alembic migrations."""
    migrate.upgrade(gisdb.database_url(), target)
    typer.echo(f"migrated to {target}")


@app.command("destroy")
def destroy(yes: bool = typer.Option(False, "--yes", help="Really delete var/pg.")) -> None:
    """Stop the embedded cluster and delete its data."""
    if not yes:
        raise InputError("this deletes every row in the embedded cluster", hint="pass --yes")
    EmbeddedCluster(get_settings()).destroy()
    typer.echo("destroyed")


@app.command("roles")
def roles(
    apply: bool = typer.Option(False, "--apply", help="Run the SQL now instead of printing it."),
    admin_url: str = typer.Option(None, "--admin-url", envvar="ONEMAP_ADMIN_DATABASE_URL",
                                  help="A superuser (or CREATEROLE) URL of the server; default ONEMAP_DATABASE_URL."),
) -> None:
    """External PostgreSQL: create the roles onemap_owner / onemap_api / onemap_privileged.

    Prints the SQL (gis/sql/roles/roles.sql) with freshly generated passwords, or runs it with
    --apply; either way the two passwords are printed once, as the URLs to configure:
    ONEMAP_DATABASE_URL (owner: migrations, loaders) and ONEMAP_API_DATABASE_URL (the server).
    Then `onemap db migrate` as the owner grants onemap_api its tables (migration 0003)."""
    import sqlalchemy as sa

    from gis import dbroles, dbsecrets

    settings = get_settings()
    if not gisdb.uses_external(settings):
        raise InputError("the embedded cluster manages its roles itself (`onemap db up`)",
                         hint="set ONEMAP_DATABASE_URL to an external PostgreSQL to use `db roles`")
    url = sa.engine.make_url(gisdb.libpq_url(settings))
    database = url.database or settings.db.pg_database
    owner_pw, api_pw = dbsecrets.new_password(), dbsecrets.new_password()
    if apply:
        dbroles.apply_roles(admin_url or gisdb.libpq_url(settings), database, owner_pw, api_pw)
        typer.echo(f"roles applied in database {database}")
    else:
        typer.echo(dbroles.render_roles_sql(database, owner_pw, api_pw))
        typer.echo(f"-- run the SQL above as a superuser in database {database}, then:", err=True)
    for var, user, pw in (("ONEMAP_DATABASE_URL", dbroles.OWNER, owner_pw),
                          ("ONEMAP_API_DATABASE_URL", dbroles.API, api_pw)):
        shown = url.set(drivername="postgresql", username=user, password=pw).render_as_string(hide_password=False)
        typer.echo(f"{var}={shown}", err=not apply)
    typer.echo("(passwords shown once; then run `onemap db migrate` with the owner URL)", err=not apply)


@app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def psql(ctx: typer.Context) -> None:
    """Open psql on the onemap database as its owner (onemap_owner); extra arguments go to psql."""
    from core.errors import ConfigError
    from gis import dbpsql

    try:
        dbpsql.exec_psql(get_settings(), list(ctx.args))
    except FileNotFoundError as exc:
        raise ConfigError("psql not found", hint="apt-get install postgresql-client-15") from exc
