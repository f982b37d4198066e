"""Live operations: stream messages persisted with ids, live alarms, a coarse DEM in PostGIS.

* ``stream_messages``: every message ``onemap_notify()`` sends is stored first; its id is the SSE
  id, so any server process replays ``Last-Event-ID`` from the database.
* Live alarms: a statement trigger on ``gps_fixes`` runs each worker's new fixes through a state
  machine (``alarm_live_state``, thresholds in ``alarm_rules``): left patrol area, no-parking
  dwell, speeding, stationary, SOS (new column ``gps_fixes.sos``).
* ``dem_meta``/``dem_rows`` + ``ground_height()``: terrain heights (orthometric and ellipsoidal)
  for line of sight and for placing things on the ground; ``cameras.vfov``.

SQL: ``gis/sql/migrations/0004_live_ops/``.

Revision ID: 0004_live_ops
Revises: 0003_least_privilege
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0004_live_ops"
down_revision = "0003_least_privilege"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
