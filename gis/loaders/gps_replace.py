"""A replacing GPS load that never blocks readers for longer than a short swap.

``load gps --replace`` used to TRUNCATE ``gps_fixes`` and drop its month partitions first, so it
held ACCESS EXCLUSIVE on the live table for the whole load and every reader (tracks, mileage,
nearest patrollers) queued behind it. Now:

1. every month of the delivery is filled into a new detached table ``gps_fixes_pYYYYMM_new``
   (primary key and a bounds CHECK from the start; nothing is deleted, readers see the old fixes);
2. the parent's other indexes (GiST on geom, (worker_id, t), BRIN on t) are built on each new
   table in one sorted pass, and the latest position per worker is computed from them;
3. one short swap, retried under ``lock_timeout`` so a waiting swap never holds up readers long:
   lock ``gps_fixes``, drop the old month partitions, empty the default partition, rename the new
   tables (and their indexes) to the month names and ATTACH them (the pre-validated CHECK spares
   the scan; the matching indexes are attached, not built), and replace ``worker_positions``.

The caller commits right after the swap (``load_layer``), which ends the exclusive lock. Rows
written straight into the new tables fire no trigger (no live alarm, no NOTIFY), as a historical
load should. Partitions carry no grants of their own (``onemap_api`` reads them through the parent,
as for the partitions ``ensure_gps_partitions`` creates).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from core.errors import ConflictError
from gis.loaders.gps_partitions import FreshMonth, month_start, next_month, partition_name

log = logging.getLogger(__name__)

NEW_SUFFIX = "_new"
#: how long one swap attempt may wait for its locks (readers queue behind a waiting ACCESS EXCLUSIVE)
SWAP_LOCK_TIMEOUT_MS = 500
SWAP_ATTEMPTS = 40
POSITION_COLUMNS = "worker_id, device_id, t, speed, accuracy, geom"


@dataclass
class ReplacementMonths:
    """The months of a replacing load, each in a new detached table until :meth:`swap`."""

    conn: psycopg.Connection
    fresh: dict[datetime, FreshMonth] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # one replacing load at a time (their new tables have the same names)
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('onemap.gps_replace'))")

    def prepare(self, t_min: datetime, t_max: datetime) -> list[FreshMonth]:
        m, last = month_start(t_min), month_start(t_max)
        out = []
        while m <= last:
            if m not in self.fresh:
                self.fresh[m] = self._create(m)
            out.append(self.fresh[m])
            m = next_month(m)
        return out

    def _create(self, m: datetime) -> FreshMonth:
        fm = FreshMonth(partition_name(m) + NEW_SUFFIX, m, next_month(m))
        self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=fm.ident))  # a crashed load's leftover
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE {t} (LIKE gps_fixes INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS)"
            ).format(t=fm.ident)
        )
        self.conn.execute(sql.SQL("ALTER TABLE {t} ADD PRIMARY KEY (device_id, t)").format(t=fm.ident))
        self.conn.execute(
            sql.SQL("ALTER TABLE {t} ADD CONSTRAINT {c} CHECK (t >= {lo} AND t < {hi})").format(
                t=fm.ident, c=_bounds(fm), lo=sql.Literal(fm.lo), hi=sql.Literal(fm.hi)
            )
        )
        log.info("gps --replace: month %s filled into %s", f"{m:%Y-%m}", fm.name)
        return fm

    def build_indexes(self) -> None:
        """The parent's partitioned indexes (other than the primary key), built on every new table."""
        defs = self.conn.execute("""
            SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
             WHERE i.indrelid = 'gps_fixes'::regclass AND NOT i.indisprimary
             ORDER BY i.indexrelid""").fetchall()
        self.conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for fm in self.fresh.values():
            for (definition,) in defs:
                using = re.search(r" USING .*$", definition)
                assert using, definition
                self.conn.execute(sql.SQL("CREATE INDEX ON {t}").format(t=fm.ident) + sql.SQL(using.group(0)))

    def _stage_positions(self) -> None:
        """The latest fix per worker of the new data, ready before the swap."""
        self.conn.execute("DROP TABLE IF EXISTS stg_gps_positions")
        self.conn.execute(f"CREATE TEMP TABLE stg_gps_positions ON COMMIT DROP AS "
                          f"SELECT {POSITION_COLUMNS} FROM worker_positions WITH NO DATA")
        if not self.fresh:
            return
        union = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT device_id, worker_id, t, speed, accuracy, geom FROM {t}").format(t=fm.ident)
            for fm in self.fresh.values()
        )
        self.conn.execute(
            sql.SQL("""
            INSERT INTO stg_gps_positions ({cols})
            SELECT w.id, f.device_id, f.t, f.speed, f.accuracy, f.geom
              FROM workers w
              CROSS JOIN LATERAL (SELECT * FROM ({u}) g WHERE g.worker_id = w.id ORDER BY g.t DESC LIMIT 1) f
            """).format(u=union, cols=sql.SQL(POSITION_COLUMNS))
        )

    def swap(self) -> float:
        """Replace the live month partitions with the new tables; returns the seconds the swap held
        ``gps_fixes`` exclusively (until the caller's commit, which follows at once)."""
        self.build_indexes()
        self._stage_positions()
        before = self.conn.execute("SELECT current_setting('lock_timeout')").fetchone()[0]
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            try:
                with self.conn.transaction():  # savepoint: a timed-out attempt releases what it got
                    self.conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(SWAP_LOCK_TIMEOUT_MS)))
                    # the partition-creating function's lock first (its callers then lock gps_fixes)
                    self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('onemap.gps_partitions'))")
                    self.conn.execute("LOCK TABLE gps_fixes IN ACCESS EXCLUSIVE MODE")
                    t0 = time.perf_counter()
                    self._swap_locked()
                    self.conn.execute("SELECT set_config('lock_timeout', %s, true)", (before,))
                    held = time.perf_counter() - t0
                log.info("gps --replace: swapped %d months in %.3f s (attempt %d)", len(self.fresh), held, attempt)
                return held
            except psycopg.errors.LockNotAvailable:
                log.info("gps --replace: swap attempt %d timed out waiting for readers, retrying", attempt)
                time.sleep(min(0.2 * attempt, 2.0))
        raise ConflictError(
            f"gps --replace: could not lock gps_fixes for the swap in {SWAP_ATTEMPTS} attempts "
            f"({SWAP_LOCK_TIMEOUT_MS} ms each); nothing was changed"
        )

    def _swap_locked(self) -> None:
        old = [r[0] for r in self.conn.execute("""
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'gps_fixes'::regclass AND c.relname <> 'gps_fixes_default'""")]
        for name in old:
            self.conn.execute(sql.SQL("DROP TABLE {t}").format(t=sql.Identifier(name)))
        self.conn.execute("TRUNCATE gps_fixes_default")
        for fm in self.fresh.values():
            final = fm.name.removesuffix(NEW_SUFFIX)
            self.conn.execute(sql.SQL("ALTER TABLE {t} RENAME TO {n}").format(t=fm.ident, n=sql.Identifier(final)))
            for (index,) in self.conn.execute(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass", (final,)
            ).fetchall():
                index = index.strip('"')
                if index.startswith(fm.name):
                    self.conn.execute(sql.SQL("ALTER INDEX {i} RENAME TO {n}").format(
                        i=sql.Identifier(index), n=sql.Identifier(final + index[len(fm.name):])))
            self.conn.execute(
                sql.SQL("ALTER TABLE gps_fixes ATTACH PARTITION {t} FOR VALUES FROM ({lo}) TO ({hi})").format(
                    t=sql.Identifier(final), lo=sql.Literal(fm.lo), hi=sql.Literal(fm.hi)
                )
            )
            self.conn.execute(
                sql.SQL("ALTER TABLE {t} DROP CONSTRAINT {c}").format(t=sql.Identifier(final), c=_bounds(fm))
            )
        self.conn.execute("DELETE FROM worker_positions")
        self.conn.execute(f"INSERT INTO worker_positions ({POSITION_COLUMNS}) "
                          f"SELECT {POSITION_COLUMNS} FROM stg_gps_positions")


def _bounds(fm: FreshMonth) -> sql.Identifier:
    return sql.Identifier(f"{fm.name}_bounds")
