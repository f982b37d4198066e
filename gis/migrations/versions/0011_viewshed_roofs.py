"""Camera viewsheds of cameras mounted high: the camera's own building occludes when the eye is
above its roof (a lookout on a tower sees the ground past the roof's edge only), and buildings
between the camera and the near edge of its visible ground occlude too; the cached
``camera_viewsheds`` are recomputed. docs/postgis.md.

SQL: ``gis/sql/migrations/0011_viewshed_roofs/``.

Revision ID: 0011_viewshed_roofs
Revises: 0010_population_hidden
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0011_viewshed_roofs"
down_revision = "0010_population_hidden"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
