"""Month partitions of ``gps_fixes`` for a bulk load: new months are filled detached and attached once.

Maintaining a GiST or btree index row by row costs three to four times a sorted build of the same
index (1 M fixes: GiST 9.6 s incremental vs 2.2 s built, (worker_id, t) 3.7 s vs 1.6 s). So when a
load reaches a UTC month that has no partition yet, it creates the partition as a plain table with
only its primary key (ON CONFLICT needs it), fills it directly, and at the end moves in anything the
default partition caught meanwhile and ATTACHes it: PostgreSQL then builds the parent's remaining
indexes (GiST on geom, (worker_id, t), BRIN on t) in one pass each, and the bounds CHECK added at
creation spares it the validation scan. Months that already have a partition are loaded through the
parent as usual. The statement trigger on the parent does not see rows written straight into a
detached table, so ``attach_all`` updates ``worker_positions`` from the new partitions itself.

The whole load is one transaction; the advisory lock ``ensure_gps_partitions`` takes is held from the
first new month on, so a concurrent ``POST /gps`` for such a month waits for the load to commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

FIX_COLUMNS = ("device_id", "worker_id", "t", "speed", "accuracy", "geom")


def month_start(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return datetime(t.year, t.month, 1, tzinfo=UTC)


def next_month(m: datetime) -> datetime:
    return datetime(m.year + (m.month == 12), m.month % 12 + 1, 1, tzinfo=UTC)


def partition_name(m: datetime) -> str:
    return f"gps_fixes_p{m:%Y%m}"


@dataclass(frozen=True)
class FreshMonth:
    name: str
    lo: datetime  # inclusive, UTC month start
    hi: datetime  # exclusive

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.name)


@dataclass
class MonthPartitions:
    """Which months of a load go to a detached new partition and which through ``gps_fixes``."""

    conn: psycopg.Connection
    fresh: dict[datetime, FreshMonth] = field(default_factory=dict)
    attached: set[datetime] = field(default_factory=set)

    def prepare(self, t_min: datetime, t_max: datetime) -> list[FreshMonth]:
        """Make every month in [t_min, t_max] loadable; return the fresh months of that range."""
        m, last = month_start(t_min), month_start(t_max)
        out = []
        while m <= last:
            if m in self.fresh:
                out.append(self.fresh[m])
            elif m not in self.attached:
                if self.conn.execute("SELECT to_regclass(%s)", (partition_name(m),)).fetchone()[0] is None:
                    out.append(self._create(m))
                else:
                    self.attached.add(m)
            m = next_month(m)
        return out

    def _create(self, m: datetime) -> FreshMonth:
        fm = FreshMonth(partition_name(m), m, next_month(m))
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('onemap.gps_partitions'))")
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE {t} (LIKE gps_fixes INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS)"
            ).format(t=fm.ident)
        )
        self.conn.execute(sql.SQL("ALTER TABLE {t} ADD PRIMARY KEY (device_id, t)").format(t=fm.ident))
        self.conn.execute(
            sql.SQL("ALTER TABLE {t} ADD CONSTRAINT {c} CHECK (t >= {lo} AND t < {hi})").format(
                t=fm.ident, c=sql.Identifier(f"{fm.name}_bounds"), lo=sql.Literal(fm.lo), hi=sql.Literal(fm.hi)
            )
        )
        moved = self._take_from_default(fm)
        log.info("gps: new partition %s filled detached (%d fixes moved from the default partition)", fm.name, moved)
        self.fresh[m] = fm
        return fm

    def _take_from_default(self, fm: FreshMonth) -> int:
        cols = sql.SQL(", ").join(map(sql.Identifier, FIX_COLUMNS))
        return self.conn.execute(
            sql.SQL(
                "WITH d AS (DELETE FROM gps_fixes_default WHERE t >= %(lo)s AND t < %(hi)s RETURNING {cols}) "
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM d ON CONFLICT DO NOTHING"
            ).format(t=fm.ident, cols=cols),
            {"lo": fm.lo, "hi": fm.hi},
        ).rowcount

    def attach_all(self) -> None:
        """Attach every fresh month (building the parent's indexes) and bring worker_positions up to date."""
        if not self.fresh:
            return
        self.conn.execute("LOCK TABLE gps_fixes_default IN EXCLUSIVE MODE")
        for fm in self.fresh.values():
            self._take_from_default(fm)
            self.conn.execute(
                sql.SQL("ALTER TABLE gps_fixes ATTACH PARTITION {t} FOR VALUES FROM ({lo}) TO ({hi})").format(
                    t=fm.ident, lo=sql.Literal(fm.lo), hi=sql.Literal(fm.hi)
                )
            )
            self.conn.execute(
                sql.SQL("ALTER TABLE {t} DROP CONSTRAINT {c}").format(
                    t=fm.ident, c=sql.Identifier(f"{fm.name}_bounds")
                )
            )
            self.conn.execute(
                sql.SQL("""
                INSERT INTO worker_positions AS wp (worker_id, device_id, t, speed, accuracy, geom)
                SELECT w.id, f.device_id, f.t, f.speed, f.accuracy, f.geom
                  FROM workers w
                  CROSS JOIN LATERAL (SELECT * FROM {t} g WHERE g.worker_id = w.id ORDER BY g.t DESC LIMIT 1) f
                ON CONFLICT (worker_id) DO UPDATE
                   SET device_id = EXCLUDED.device_id, t = EXCLUDED.t, speed = EXCLUDED.speed,
                       accuracy = EXCLUDED.accuracy, geom = EXCLUDED.geom
                 WHERE EXCLUDED.t > wp.t""").format(t=fm.ident)
            )
            log.info("gps: attached %s", fm.name)
        self.attached.update(self.fresh)
        self.fresh.clear()

