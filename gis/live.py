"""The live stream's stored messages (table ``stream_messages``, filled by ``onemap_notify()``).

Read by the API to replay what a reconnecting client missed, in any server process.
SQL lives in ``gis/sql/stream/``.
"""

from __future__ import annotations

from sqlalchemy import Connection

from gis.sqlfiles import sql


def messages_since(conn: Connection, last_id: int, limit: int) -> tuple[list[tuple[int, str, str]] | None, int | None]:
    """((id, type, payload JSON text) after ``last_id`` in id order, or None when more than
    ``limit`` are waiting; the oldest id still stored)."""
    rows = [(int(r[0]), str(r[1]), str(r[2]))
            for r in conn.execute(sql("stream/since"), {"last_id": last_id, "limit": limit + 1})]
    oldest = conn.execute(sql("stream/oldest")).scalar()
    return (None if len(rows) > limit else rows), (None if oldest is None else int(oldest))
