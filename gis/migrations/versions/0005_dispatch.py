"""Dispatch over the road network: the pgRouting graph of the roads layer (``road_vertices``,
``road_edges``, ``road_speed``; ``road_graph_rebuild()``, ``road_route_costs()``), the worker's
steps after a dispatch as lifecycle statuses (``en_route``, ``on_scene``), priority deadlines
(``priority_deadline``), the duty roster (``duty_roster``, ``on_duty()``) and deadline escalation
alarms (``escalate_missed_deadlines()``, ``alarms.event_id``). Grants for ``onemap_api``.

SQL: ``gis/sql/migrations/0005_dispatch/``.

Revision ID: 0005_dispatch
Revises: 0004_accounts, 0004_live_ops
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0005_dispatch"
down_revision = ("0004_accounts", "0004_live_ops")
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
