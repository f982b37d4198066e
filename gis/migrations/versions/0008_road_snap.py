"""Road graph with end snapping: ``road_graph_rebuild()`` joins road ends that stop short of (or
run just past) the road they meet, within a tolerance (``p_end_snap_m``, default 2 m; setting
``ONEMAP_ROAD_END_SNAP_M``), before noding; the class-default speeds (``road_speed`` row ``*``)
may be given (settings ``ONEMAP_DISPATCH_WALK_KMH`` / ``ONEMAP_DISPATCH_DRIVE_KMH``).

SQL: ``gis/sql/migrations/0008_road_snap/``.

Revision ID: 0008_road_snap
Revises: 0007_access
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0008_road_snap"
down_revision = "0007_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
