"""Civil affairs (issue 16): community targets (security-incident categories, category groups,
``surveys``), camera coverage (``camera_viewsheds``, ``camera_viewshed_geom()``, rebuilt when a
camera changes) and care visits (``restricted.care_households``/``care_visits``, the device
write ``care_visit_record()``, suppressed ``care_by_community()``). docs/postgis.md.

SQL: ``gis/sql/migrations/0009_civil/``.

Revision ID: 0009_civil
Revises: 0008_road_snap
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0009_civil"
down_revision = "0008_road_snap"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
