"""Operational overlay layers: reference layers, events, population, cameras, GPS, alarms.

SQL: one file per concern in ``gis/sql/migrations/0001_overlays/``. Design notes: docs/postgis.md.

Revision ID: 0001_overlays
Revises: 0000_base
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0001_overlays"
down_revision = "0000_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
