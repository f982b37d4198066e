"""Alembic migrations, run programmatically (no alembic.ini needed).

Revisions live in ``gis/migrations/versions``. Independent branches (overlays, auth) both
start from ``0000_base``; ``upgrade`` always goes to ``heads``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, target: str = "heads") -> None:
    command.upgrade(alembic_config(url), target)


def downgrade(url: str, target: str = "base") -> None:
    command.downgrade(alembic_config(url), target)


def current_revisions(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("postgresql://x")).get_heads())


def pending(url: str) -> bool:
    return current_revisions(url) != head_revisions()
