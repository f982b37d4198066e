"""Alembic migrations, run programmatically (no alembic.ini needed).

Revisions live in ``gis/migrations/versions`` and are thin: each runs the SQL files of its
revision in ``gis/sql/migrations/<revision>/`` (``up*.sql`` in name order, ``down*.sql`` on
downgrade) through :func:`run_sql_files`. Independent branches (overlays, auth) both start from
``0000_base``; ``upgrade`` always goes to ``heads``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import create_engine

# alembic is imported where it is used: ~0.1 s that every `onemap` command paid at start-up
if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_SQL_DIR = Path(__file__).resolve().parent / "sql" / "migrations"


def migration_sql_files(revision: str, direction: Literal["up", "down"]) -> list[Path]:
    """The SQL files a revision runs, in order (``up*.sql`` or ``down*.sql``)."""
    files = sorted((MIGRATION_SQL_DIR / revision).glob(f"{direction}*.sql"))
    if not files:
        raise FileNotFoundError(f"no {direction}*.sql for migration {revision!r} in {MIGRATION_SQL_DIR}")
    return files


def run_sql_files(revision: str, direction: Literal["up", "down"]) -> None:
    """Execute a revision's SQL files inside the running Alembic migration.

    Sent as written through the driver's cursor without parameters (in the migration's
    transaction): no ``:name`` bind parsing and no ``%`` placeholders, so the files are plain
    PostgreSQL that ``psql -f`` would run the same way.
    """
    from alembic import op

    dbapi_conn = op.get_bind().connection
    for path in migration_sql_files(revision, direction):
        cur = dbapi_conn.cursor()
        try:
            cur.execute(path.read_text(encoding="utf-8"))
        finally:
            cur.close()


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, target: str = "heads") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), target)


def downgrade(url: str, target: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), target)


def current_revisions(url: str) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def head_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config("postgresql://x")).get_heads())


def pending(url: str) -> bool:
    return current_revisions(url) != head_revisions()
