"""API users (bearer tokens, stored only as SHA-256 hashes) and the append-only audit log.

SQL: ``gis/sql/migrations/0001_auth/``.

Revision ID: 0001_auth
Revises: 0000_base
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0001_auth"
down_revision = "0000_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
