"""Least privilege: what the API's role ``onemap_api`` may read and write, and nothing else.

Joins the two branches (auth, overlays). ``onemap_api`` (LOGIN NOINHERIT, created by
``gis/sql/roles/roles.sql``) gets its table grants directly: SELECT on the layers, INSERT/UPDATE
on the tables the API writes, the accounts tables the auth code needs; no DDL, no schema
``restricted`` (only through ``SET LOCAL ROLE onemap_privileged``). SECURITY DEFINER functions are
no longer executable by PUBLIC.

SQL: ``gis/sql/migrations/0003_least_privilege/``.

Revision ID: 0003_least_privilege
Revises: 0001_auth, 0002_events_time_cover
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0003_least_privilege"
down_revision = ("0001_auth", "0002_events_time_cover")
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
