"""Base: PostGIS extension and the restricted schema for personal data.

SQL: ``gis/sql/migrations/0000_base/``.

Revision ID: 0000_base
Revises:
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0000_base"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
