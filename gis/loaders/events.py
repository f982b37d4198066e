"""events.csv -> events (+ their status history, written by the insert trigger).

Reload = replace, while the API keeps serving: one transaction DELETEs the old events and their
history and INSERTs the new ones. No TRUNCATE, no DROP/CREATE INDEX or constraint (each takes an
ACCESS EXCLUSIVE lock that queues every reader behind the load): readers see the previous events
through MVCC until the load commits, then the new ones (docs/postgis.md "Reloading"). Writers of
the history wait for the commit (the append-only trigger is off for the DELETE).
Building, grid cell and community are what ``locate_point()`` (the insert trigger's function for
single events) gives, computed set-based for the whole load (``gis/sql/events/load_ready.sql``);
the transaction setting ``onemap.located`` tells the trigger not to look again (migration 0012).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg

from gis import lifecycle
from gis.loaders import io
from gis.loaders.db import ids_in, quiet, stage
from gis.loaders.io import Mapping
from gis.loaders.report import LayerReport
from gis.sqlfiles import SQL_DIR

log = logging.getLogger(__name__)

#: lifecycle order of the timestamp columns along the main path
MAIN_PATH = ("reported", "accepted", "dispatched", "handled", "verified", "closed")
#: optional steps between dispatched and handled (the worker's accept and arrive)
DISPATCH_STEPS = ("en_route", "on_scene")
TS_COLS = [lifecycle.TIMESTAMP_COLUMN[s] for s in lifecycle.STATUSES]


def _sql(name: str) -> str:
    """The events loader's statement ``gis/sql/events/<name>.sql`` (no parameters)."""
    return (SQL_DIR / "events" / f"{name}.sql").read_text(encoding="utf-8")


class _Steps:
    """Seconds per step of a load, for the log (``read+validate 1.8 s, stage 0.7 s, ...``)."""

    def __init__(self, t0: float) -> None:
        self.last = t0
        self.seconds: dict[str, float] = {}

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self.last
        self.last = now

    def __str__(self) -> str:
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())


def validate_lifecycle(df: pd.DataFrame, report: LayerReport) -> pd.DataFrame:
    """Status and timestamps must describe a legal path: every step of the main path up to the
    status is set and non-decreasing, nothing after it is set; ``rejected`` comes from reported or
    accepted."""
    status = df["status"].to_numpy()
    n = len(df)
    bad = np.zeros(n, dtype=bool)
    why = np.empty(n, dtype=object)
    reached_idx = {s: i for i, s in enumerate(MAIN_PATH)}
    ts = {s: df[lifecycle.TIMESTAMP_COLUMN[s]] for s in lifecycle.STATUSES}
    for st in lifecycle.STATUSES:
        rows = status == st
        if not rows.any():
            continue
        if st == "rejected":
            last = 1  # reported, maybe accepted
            need = ["reported"]
            forbid = list(MAIN_PATH[2:])
        elif st in DISPATCH_STEPS:  # the dispatched worker's steps: dispatched, then these in order
            last = reached_idx["dispatched"]
            need = list(MAIN_PATH[: last + 1]) + list(DISPATCH_STEPS[: DISPATCH_STEPS.index(st) + 1])
            forbid = list(MAIN_PATH[last + 1 :]) + ["rejected"]
        else:
            last = reached_idx[st]
            need = list(MAIN_PATH[: last + 1])
            forbid = list(MAIN_PATH[last + 1 :]) + ["rejected"]
        for s in need:
            miss = rows & ts[s].isna().to_numpy() & ~bad
            why[miss] = f"status {st} but {s}_at is empty"
            bad |= miss
        for s in forbid:
            extra = rows & ts[s].notna().to_numpy() & ~bad
            why[extra] = f"status {st} but {s}_at is set"
            bad |= extra
        # order: each reached step no earlier than the previous reached one
        seq = list(MAIN_PATH[: last + 1]) + (["rejected"] if st == "rejected" else [])
        latest = ts["reported"]
        for s in seq[1:]:
            cur = ts[s]
            earlier = rows & (cur < latest).fillna(False).to_numpy() & ~bad
            why[earlier] = f"{s}_at is before an earlier step"
            bad |= earlier
            latest = cur.where(cur.notna(), latest)
    if bad.any():
        msgs = why[bad].tolist()
        df = report.reject_mask(df, bad, "status", "inconsistent_lifecycle", msgs, value_col="status")
    return df


def load_events(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    report = LayerReport(layer="events", source=str(path))
    df = io.read_table(path, mapping, report)
    io.require_columns(df, ("id", "category", "priority", "source", "x", "y", "status", "reported_at"), path)
    df["id"] = io.text_or_none(df["id"])
    df = io.check_required(df, report, "id")
    df = io.check_unique(df, report, ["id"])
    categories = ids_in(conn, "event_category", "code")
    df = io.check_enum(df, report, "category", categories)
    df = io.check_enum(df, report, "priority", ("A", "B", "C", "D"))
    df = io.check_enum(df, report, "source", ("grid_worker", "resident", "camera"))
    df = io.check_enum(df, report, "status", lifecycle.STATUSES)
    df = io.check_numeric(df, report, "x", lo=io.X4548_RANGE[0], hi=io.X4548_RANGE[1], required=True)
    df = io.check_numeric(df, report, "y", lo=io.Y4548_RANGE[0], hi=io.Y4548_RANGE[1], required=True)
    df = io.check_timestamps(df, report, TS_COLS, required=("reported_at",))
    df = validate_lifecycle(df, report)
    df["worker_id"] = io.text_or_none(df["worker_id"]) if "worker_id" in df.columns else None
    df = io.check_enum(df, report, "worker_id", ids_in(conn, "workers"), required=False, reason="unknown_reference")
    df["description"] = io.text_or_none(df["description"]) if "description" in df.columns else None
    cols = {
        "id": "text",
        "category": "text",
        "priority": "text",
        "source": "text",
        "description": "text",
        "status": "text",
        "worker_id": "text",
        "x": "double precision",
        "y": "double precision",
    }
    cols |= {c: "timestamptz" for c in TS_COLS}
    out = df[list(cols)].copy()
    for c in TS_COLS:
        out[c] = out[c].astype("datetime64[us, UTC]")
    steps = _Steps(t0)
    steps.done("read+validate")
    quiet(conn)
    # the load's own sorts and hashes (1 M rows: ORDER BY, the location join, the history's
    # window) in memory; this transaction only
    conn.execute("SELECT set_config('work_mem', '256MB', true)")
    stage(conn, "stg_events", cols, out)
    steps.done("stage")
    # 1. Everything costly (deadline, location) into temp tables: the live tables are only read.
    conn.execute(_sql("load_points"))
    conn.execute("CREATE INDEX ON stg_events_pt USING gist (pt)")
    conn.execute("ANALYZE stg_events_pt")
    conn.execute(_sql("load_ready"))
    steps.done("locate")
    # 2. Replace the rows: row locks only on events (readers see the old rows until commit). The
    # history's append-only trigger is switched off for this transaction's DELETE: SHARE ROW
    # EXCLUSIVE, which waits for (and holds off) writers of the history, never readers.
    conn.execute("ALTER TABLE event_status_history DISABLE TRIGGER event_status_history_append_only")
    conn.execute("DELETE FROM event_status_history")
    conn.execute("ALTER TABLE event_status_history ENABLE TRIGGER event_status_history_append_only")
    conn.execute("DELETE FROM events")
    steps.done("delete")
    # Every row is located (an event outside every area keeps NULLs): onemap.located keeps
    # events_before_insert (migration 0012) from running locate_point() again for those; the
    # deadline is set, so neither BEFORE trigger fires. The statement trigger writes the history.
    conn.execute("SELECT set_config('onemap.located', 'on', true)")
    ts_list = ", ".join(TS_COLS)
    cols_out = f"id, category, priority, source, description, status, worker_id, {ts_list}, " \
        "deadline_at, building_id, grid_id, community_id, geom"
    cur = conn.execute(
        f"INSERT INTO events ({cols_out}) SELECT {cols_out} FROM stg_events_ready ORDER BY reported_at"  # noqa: S608
    )
    conn.execute("SELECT set_config('onemap.located', '', true)")
    steps.done("insert")
    log.info("events load: %s", steps)
    report.finish(cur.rowcount)
    located = conn.execute("SELECT count(*) FILTER (WHERE grid_id IS NULL) FROM events").fetchone()
    if located and located[0]:
        report.note(f"{located[0]} events lie in no grid cell (grid_id NULL)")
    report.seconds = time.perf_counter() - t0
    return report
