"""Where the database is, and engines/sessions onto it, as which role.

One rule: ``ONEMAP_DATABASE_URL`` wins; otherwise the embedded cluster under ``var/pg``.
Two roles: :func:`database_url` is the schema owner's (``onemap_owner``: migrations, loaders,
``onemap users``, ``onemap db psql``); :func:`api_database_url` is the server's (``onemap_api``:
``ONEMAP_API_DATABASE_URL`` with an external database, else the embedded cluster's role).
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine, create_engine, text

from core.settings import DatabaseSettings, Settings, get_settings
from gis.cluster import EmbeddedCluster


def db_settings(settings: DatabaseSettings | Settings | None = None) -> DatabaseSettings:
    """The database group of ``settings`` (default: :func:`core.settings.get_settings`)."""
    if settings is None:
        settings = get_settings()
    return settings.db if isinstance(settings, Settings) else settings


def uses_external(settings: DatabaseSettings | Settings | None = None) -> bool:
    return bool(db_settings(settings).database_url)


def _sqlalchemy(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def database_url(settings: DatabaseSettings | Settings | None = None) -> str:
    """SQLAlchemy URL (psycopg 3 driver) of the database as its owner (every command but ``serve``)."""
    settings = db_settings(settings)
    if settings.database_url:
        return _sqlalchemy(settings.database_url)
    return EmbeddedCluster(settings).url()


def libpq_url(settings: DatabaseSettings | Settings | None = None) -> str:
    """The owner's URL as a plain libpq URL (for psycopg, COPY, psql)."""
    return _libpq(database_url(settings))


def api_database_url(settings: DatabaseSettings | Settings | None = None) -> str:
    """SQLAlchemy URL the API server connects with (role ``onemap_api``).

    External database: ``ONEMAP_API_DATABASE_URL``, else ``ONEMAP_DATABASE_URL`` (which the server
    then refuses if it is a superuser or the owner, unless ``ONEMAP_ALLOW_PRIVILEGED_DB_USER``)."""
    settings = db_settings(settings)
    if settings.api_database_url:
        return _sqlalchemy(settings.api_database_url)
    if settings.database_url:
        return _sqlalchemy(settings.database_url)
    return EmbeddedCluster(settings).url(role="onemap_api")


def api_libpq_url(settings: DatabaseSettings | Settings | None = None) -> str:
    """The API's URL as a plain libpq URL (LISTEN)."""
    return _libpq(api_database_url(settings))


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, future=True)


def get_engine(settings: DatabaseSettings | Settings | None = None) -> Engine:
    return _engine(database_url(settings))


def postgis_version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT postgis_version()")).scalar_one())
