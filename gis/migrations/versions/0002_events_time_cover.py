"""Events: a covering time index for the time-window analytics (heatmaps, hotspots).

The 30-day heatmap reads ~8 % of a year of events. Through the plain ``reported_at`` btree every
matching row costs a random heap page (events arrive scattered over the table once statuses are
updated), so the index is replaced by one that carries what the density queries read
(``category``, ``grid_id``, ``id``, ``geom_4548``): they become index-only scans. Measured on
1 M events (bench/bench_postgis.py): 30-day 100 m squares 154 ms -> ~45 ms.

SQL: ``gis/sql/migrations/0002_events_time_cover/``.

Revision ID: 0002_events_time_cover
Revises: 0001_overlays
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0002_events_time_cover"
down_revision = "0001_overlays"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
