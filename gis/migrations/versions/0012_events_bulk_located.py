"""Bulk event loads skip events_before_insert's location lookup: the trigger's WHEN clause also
requires the transaction setting ``onemap.located`` to be unset before it re-runs
``locate_point()`` for an event with no building, grid cell or community (the events loader
locates every row itself, set-based, and sets it). docs/postgis.md.

SQL: ``gis/sql/migrations/0012_events_bulk_located/``.

Revision ID: 0012_events_bulk_located
Revises: 0011_viewshed_roofs
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0012_events_bulk_located"
down_revision = "0011_viewshed_roofs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
