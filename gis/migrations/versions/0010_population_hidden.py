"""Population suppression stored: ``restricted.population_hidden`` holds what
``population_complementary()`` (0006_privacy) hides, recomputed by ``population_hidden_refresh()``
when a loader changes persons, buildings, grid cells or communities, instead of on every query of
the public ``population_by_*`` views (21-27 s a query on the sample). Any other change of those
tables marks the stored set stale (statement triggers); a stale set, or one of another year, is
not used: the views then compute it per query as before. docs/postgis.md.

SQL: ``gis/sql/migrations/0010_population_hidden/``.

Revision ID: 0010_population_hidden
Revises: 0009_civil
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0010_population_hidden"
down_revision = "0009_civil"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
