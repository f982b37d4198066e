"""Where the database is, and engines/sessions onto it.

One rule: ``ONEMAP_DATABASE_URL`` wins; otherwise the embedded cluster under ``var/pg``.
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


def database_url(settings: DatabaseSettings | Settings | None = None) -> str:
    """SQLAlchemy URL (psycopg 3 driver) of the database every command uses."""
    settings = db_settings(settings)
    if settings.database_url:
        url = settings.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg://" + url[len(prefix):]
        return url
    return EmbeddedCluster(settings).url()


def libpq_url(settings: DatabaseSettings | Settings | None = None) -> str:
    """The same database as a plain libpq URL (for psycopg, COPY, LISTEN)."""
    return database_url(settings).replace("postgresql+psycopg://", "postgresql://", 1)


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, future=True)


def get_engine(settings: DatabaseSettings | Settings | None = None) -> Engine:
    return _engine(database_url(settings))


def postgis_version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT postgis_version()")).scalar_one())
