"""Accounts people use and identities bound to what they may do.

Passwords (argon2id hashes) on ``api_users``; tokens move to ``api_tokens`` (many per user, each
with an expiry, revocation and last use); device accounts are bound to their device ids
(``api_user_devices``) and carry the ``source`` their events get; failed logins are counted in
``login_failures`` (shared by every server process); ``audit_log`` gains ``ids`` (which rows a
write touched). Grants for ``onemap_api`` on the new tables.

SQL: ``gis/sql/migrations/0004_accounts/``.

Revision ID: 0004_accounts
Revises: 0003_least_privilege
"""

from __future__ import annotations

from gis.migrate import run_sql_files

revision = "0004_accounts"
down_revision = "0003_least_privilege"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_files(revision, "up")


def downgrade() -> None:
    run_sql_files(revision, "down")
