"""Access: the facilities layer and walking access to it over the road graph (issue 16).

Tables ``facility_kind``, ``facilities``; the view ``building_road_vertex``; functions
``access_vertex_m`` / ``access_buildings`` (walking metres to the nearest facility of a kind,
pgr_dijkstraCost from the facilities' vertices), ``access_by_community`` (suppressed counts of
residents, 80+, disabled, low-income within 5/10/15 minutes) and ``access_sites`` (greedy maximal
coverage). docs/postgis.md "Walking access".

SQL: ``gis/sql/migrations/0007_access/``.

Revision ID: 0007_access
Revises: 0006_privacy
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0007_access"
down_revision = "0006_privacy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
