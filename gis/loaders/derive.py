"""Derived layers rebuilt after loading fixes: latest positions, shift tracks, check-ins, alarms."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import psycopg

log = logging.getLogger(__name__)


def fix_time_range(conn: psycopg.Connection) -> tuple[datetime, datetime] | None:
    """[first fix, last fix + 1 µs) or None when there are no fixes."""
    row = conn.execute("SELECT min(t), max(t) FROM worker_positions").fetchone()
    lo = conn.execute("SELECT min(t) FROM gps_fixes").fetchone()
    if not row or row[1] is None or not lo or lo[0] is None:
        return None
    return lo[0], row[1] + timedelta(microseconds=1)


def derive_all(conn: psycopg.Connection, *, alarms: bool = True) -> dict[str, Any]:
    """Rebuild worker_positions, shift_tracks, checkins and (batch) alarms over every loaded fix.

    Runs quietly (no NOTIFY) inside the caller's transaction; the alarm watermark is set to the
    newest fix so the incremental ``process_geofence_alarms()`` continues from there.
    """
    conn.execute("SELECT set_config('onemap.quiet', 'on', true)")
    out: dict[str, Any] = {}
    out["worker_positions"] = conn.execute("SELECT refresh_worker_positions()").fetchone()[0]
    span = fix_time_range(conn)
    if span is None:
        out["shift_tracks"] = out["checkins"] = out["alarms"] = 0
        return out
    lo, hi = span
    out["shift_tracks"] = conn.execute("SELECT derive_shift_tracks(%s, %s)", (lo, hi)).fetchone()[0]
    conn.execute("DELETE FROM checkins")
    cur = conn.execute(
        """INSERT INTO checkins (checkpoint_id, worker_id, shift_start, first_t, last_t, n_fixes,
                                 min_distance_m)
           SELECT checkpoint_id, worker_id, shift_start, first_t, last_t, n_fixes, min_distance_m
             FROM checkpoint_visits(%s, %s)""",
        (lo, hi),
    )
    out["checkins"] = cur.rowcount
    if alarms:
        conn.execute("TRUNCATE alarms")
        out["alarms"] = conn.execute("SELECT raise_geofence_alarms(%s, %s)", (lo, hi)).fetchone()[0]
        conn.execute(
            """INSERT INTO alarm_watermark (name, t) VALUES ('geofence', %s)
               ON CONFLICT (name) DO UPDATE SET t = EXCLUDED.t, updated_at = now()""",
            (hi - timedelta(microseconds=1),),
        )
    return out
