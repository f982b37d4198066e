"""Base: PostGIS extension and the restricted schema for personal data.

Revision ID: 0000_base
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0000_base"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    # Person-level records live here; only privileged roles are granted access (see gis/models.py).
    op.execute("CREATE SCHEMA IF NOT EXISTS restricted")


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS restricted CASCADE")
