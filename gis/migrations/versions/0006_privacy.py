"""Privacy: complementary suppression of the public population views.

A hidden (below 5) count can no longer be recovered by subtracting published counts: grid cell
minus its buildings, community minus its buildings or grid cells, total minus registered or
floating (``population_complementary()``; docs/security.md).

SQL: ``gis/sql/migrations/0006_privacy/``.

Revision ID: 0006_privacy
Revises: 0005_dispatch
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0006_privacy"
down_revision = "0005_dispatch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
