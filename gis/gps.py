"""GPS fixes posted by devices: store a validated batch, report the fixes not stored.

SQL lives in ``gis/sql/gps/``. The insert fires the triggers that update ``worker_positions``,
NOTIFY ``position`` messages to the live stream and evaluate the live alarms (geofence exit,
no-parking dwell, speeding, stationary, SOS) in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from gis.sqlfiles import sql


@dataclass(frozen=True)
class GpsFix:
    device_id: str
    t: datetime
    lon: float
    lat: float
    speed: float | None = None  # m/s
    accuracy: float | None = None  # m
    sos: bool = False  # the device's SOS button


@dataclass(frozen=True)
class Refused:
    """A fix not stored: its position in the batch, the field at fault and why."""

    index: int
    field: str
    msg: str


def store_fixes(conn: Connection, fixes: list[tuple[int, GpsFix]]) -> tuple[int, list[Refused]]:
    """Insert ``(index, fix)`` pairs (one fix per (device, t) in the batch) in ``conn``'s transaction.

    Returns the number stored and the refused ones: unknown or inactive devices, and fixes
    already stored. Monthly partitions for the batch's time range are created first.
    """
    if not fixes:
        return 0, []
    devices = dict(conn.execute(sql("gps/active_devices"), {"ids": sorted({f.device_id for _, f in fixes})}).all())
    refused: list[Refused] = []
    rows: list[tuple[int, GpsFix, str | None]] = []
    for i, fix in fixes:
        if fix.device_id not in devices:
            refused.append(Refused(i, "device_id", "unknown or inactive device"))
        else:
            rows.append((i, fix, devices[fix.device_id]))
    if not rows:
        return 0, refused
    conn.execute(sql("gps/ensure_partitions"), {"t0": min(f.t for _, f, _ in rows), "t1": max(f.t for _, f, _ in rows)})
    inserted = conn.execute(sql("gps/insert_fixes"), {
        "d": [f.device_id for _, f, _ in rows], "w": [w for _, _, w in rows], "t": [f.t for _, f, _ in rows],
        "s": [f.speed for _, f, _ in rows], "a": [f.accuracy for _, f, _ in rows],
        "x": [f.lon for _, f, _ in rows], "y": [f.lat for _, f, _ in rows], "sos": [f.sos for _, f, _ in rows],
    }).all()
    stored = {(d, t) for d, t in inserted}
    refused += [Refused(i, "t", "duplicate fix (device_id, t) already stored")
                for i, fix, _ in rows if (fix.device_id, fix.t) not in stored]
    return len(inserted), refused
