"""Civil-affairs deliveries (issue 16, migration 0009_civil): satisfaction surveys and care
households with their visits.

- ``surveys.csv`` -> ``surveys``: ``community_id``, ``period`` (YYYY-MM-DD, the first day of the
  surveyed month or quarter), ``topic`` (blank: ``overall``), ``respondents`` (> 0), ``satisfied``
  (0 .. respondents). A delivery is authoritative for the periods it holds: their rows are
  replaced; other periods are kept (a quarter's survey can be delivered alone).
- ``care_households.csv`` -> ``restricted.care_households`` (person-level: loaded as the owner,
  never published): ``id`` (a pseudonym), ``building_id``, ``category``
  (``restricted.care_category``), ``interval_days`` (blank: the category's default),
  ``worker_id`` (optional), ``enrolled_on`` (optional date). Replaces the households (upsert by
  id; ids the delivery no longer has are deleted with their visits, except rejected ones).
- ``care_visits.csv`` -> ``restricted.care_visits``: ``household_id``, ``worker_id``,
  ``visited_at`` (ISO-8601; no offset: Asia/Shanghai), ``outcome`` (blank: visited), ``note``.
  Appended: a visit already recorded (same household and time, e.g. through the API) is counted
  as loaded, not inserted twice, so visits recorded on devices survive a reload.

A delivery with no valid row is refused unless ``--allow-empty`` (core.delivery accounting and
reason codes, like every loader).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import psycopg

from gis.loaders import io
from gis.loaders.db import ids_in, stage
from gis.loaders.io import Mapping
from gis.loaders.reference import _rejected_ids
from gis.loaders.report import LayerReport

OUTCOMES = ("visited", "not_home", "refused")


def _dates(df: pd.DataFrame, report: LayerReport, col: str, id_col: str, required: bool) -> pd.DataFrame:
    """Parse ``col`` as YYYY-MM-DD dates (in place, ``datetime.date`` or None)."""
    if col not in df.columns:
        if required:
            io.require_columns(df, (col,), report.source)
        df[col] = None
        return df
    raw = df[col]
    parsed = pd.to_datetime(raw.where(~io.blank(raw)), format="%Y-%m-%d", errors="coerce")
    df = report.reject_mask(df, (parsed.isna() & ~io.blank(raw)).to_numpy(), col, "unparsable_value",
                            f"{col} is not a date (YYYY-MM-DD)", id_col, col)
    parsed = parsed[df.index]
    if required:
        df = report.reject_mask(df, parsed.isna().to_numpy(), col, "missing_value", f"{col} is empty", id_col)
        parsed = parsed[df.index]
    df[col] = [None if pd.isna(v) else v.date() for v in parsed]
    return df


# --- surveys ----------------------------------------------------------------------------------------
def load_surveys(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    report = LayerReport(layer="surveys", source=str(path))
    df = io.read_table(path, mapping, report)
    io.require_columns(df, ("community_id", "period", "respondents", "satisfied"), path)
    df["community_id"] = io.text_or_none(df["community_id"])
    df["topic"] = io.text_or_none(df["topic"]).fillna("overall") if "topic" in df.columns else "overall"
    df["key"] = df["community_id"].fillna("") + "/" + df["period"].fillna("").astype(str) + "/" + df["topic"]
    df = io.check_required(df, report, "community_id", id_col="key")
    df = io.check_enum(df, report, "community_id", ids_in(conn, "communities"), id_col="key",
                       reason="unknown_reference")
    df = _dates(df, report, "period", "key", required=True)
    df = io.check_numeric(df, report, "respondents", lo=0, lo_open=True, hi=1_000_000, required=True,
                          integer=True, id_col="key")
    df = io.check_numeric(df, report, "satisfied", lo=0, hi=1_000_000, required=True, integer=True, id_col="key")
    df = report.reject_mask(df, (df["satisfied"] > df["respondents"]).to_numpy(dtype=bool), "satisfied",
                            "absurd_value",
                            lambda b: [f"satisfied {s} > respondents {r}" for s, r in zip(b["satisfied"],
                                                                                           b["respondents"],
                                                                                           strict=True)],
                            "key", "satisfied")
    df = io.check_unique(df, report, ["community_id", "period", "topic"], id_col="key")
    io.refuse_empty(report, mapping, len(df), "surveys")
    cols = {"community_id": "text", "period": "date", "topic": "text", "respondents": "integer",
            "satisfied": "integer"}
    stage(conn, "stg_surveys", cols, df[list(cols)])
    deleted = conn.execute("""
        DELETE FROM surveys s
         WHERE s.period IN (SELECT DISTINCT period FROM stg_surveys)
           AND NOT EXISTS (SELECT 1 FROM stg_surveys t WHERE (t.community_id, t.period, t.topic)
                                                           = (s.community_id, s.period, s.topic))
    """).rowcount
    cur = conn.execute("""
        INSERT INTO surveys (community_id, period, topic, respondents, satisfied)
        SELECT community_id, period, topic, respondents, satisfied FROM stg_surveys
        ON CONFLICT (community_id, period, topic)
        DO UPDATE SET respondents = EXCLUDED.respondents, satisfied = EXCLUDED.satisfied
    """)
    report.finish(cur.rowcount)
    if deleted:
        report.note(f"{deleted} rows of the delivered periods not in this delivery were deleted")
    report.seconds = time.perf_counter() - t0
    return report


# --- care households --------------------------------------------------------------------------------
def load_care_households(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    report = LayerReport(layer="care_households", source=str(path))
    df = io.read_table(path, mapping, report)
    io.require_columns(df, ("id", "building_id", "category"), path)
    df["id"] = io.text_or_none(df["id"])
    df = io.check_required(df, report, "id")
    bad_id = ~df["id"].str.fullmatch(r"[A-Za-z0-9_.-]{1,40}").to_numpy(dtype=bool)
    df = report.reject_mask(df, bad_id, "id", "unparsable_value",
                            "id must be 1-40 letters, digits, '_', '.' or '-'", "id", "id")
    df = io.check_unique(df, report, ["id"])
    df["building_id"] = io.text_or_none(df["building_id"])
    df = io.check_required(df, report, "building_id")
    df = io.check_enum(df, report, "building_id", ids_in(conn, "buildings"), reason="unknown_reference")
    defaults = dict(conn.execute("SELECT code, default_interval_days FROM restricted.care_category").fetchall())
    df["category"] = io.text_or_none(df["category"])
    df = io.check_enum(df, report, "category", defaults)
    df = io.check_numeric(df, report, "interval_days", lo=1, hi=366, integer=True)
    df["interval_days"] = df["interval_days"].fillna(df["category"].map(defaults)).astype("Int64")
    df["worker_id"] = io.text_or_none(df["worker_id"]) if "worker_id" in df.columns else None
    df = io.check_enum(df, report, "worker_id", ids_in(conn, "workers"), required=False, reason="unknown_reference")
    df = _dates(df, report, "enrolled_on", "id", required=False)
    io.refuse_empty(report, mapping, len(df), "restricted.care_households")
    cols = {"id": "text", "building_id": "text", "category": "text", "interval_days": "integer",
            "worker_id": "text", "enrolled_on": "date"}
    stage(conn, "stg_care_households", cols, df[list(cols)])
    cur = conn.execute("""
        INSERT INTO restricted.care_households (id, building_id, category, interval_days, worker_id, active,
                                                enrolled_on)
        SELECT id, building_id, category, interval_days, worker_id, true, coalesce(enrolled_on, current_date)
          FROM stg_care_households
        ON CONFLICT (id) DO UPDATE SET building_id = EXCLUDED.building_id, category = EXCLUDED.category,
               interval_days = EXCLUDED.interval_days, worker_id = EXCLUDED.worker_id, active = true,
               enrolled_on = EXCLUDED.enrolled_on
    """)
    report.finish(cur.rowcount)
    deleted = conn.execute("""
        DELETE FROM restricted.care_households h
         WHERE NOT EXISTS (SELECT 1 FROM stg_care_households s WHERE s.id = h.id) AND NOT (h.id = ANY (%s))
    """, (_rejected_ids(report, df),)).rowcount
    if deleted:
        report.note(f"{deleted} households not in this delivery were deleted (with their visits)")
    report.seconds = time.perf_counter() - t0
    return report


# --- care visits ------------------------------------------------------------------------------------
def load_care_visits(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    report = LayerReport(layer="care_visits", source=str(path))
    df = io.read_table(path, mapping, report)
    io.require_columns(df, ("household_id", "visited_at"), path)
    df["household_id"] = io.text_or_none(df["household_id"])
    df["key"] = df["household_id"].fillna("") + "@" + df["visited_at"].fillna("").astype(str)
    df = io.check_required(df, report, "household_id", id_col="key")
    households = {r[0] for r in conn.execute("SELECT id FROM restricted.care_households")}
    df = io.check_enum(df, report, "household_id", households, id_col="key", reason="unknown_reference")
    df = io.check_timestamps(df, report, ["visited_at"], required=["visited_at"], id_col="key")
    df["worker_id"] = io.text_or_none(df["worker_id"]) if "worker_id" in df.columns else None
    df = io.check_enum(df, report, "worker_id", ids_in(conn, "workers"), required=False, id_col="key",
                       reason="unknown_reference")
    df["outcome"] = io.text_or_none(df["outcome"]).fillna("visited") if "outcome" in df.columns else "visited"
    df = io.check_enum(df, report, "outcome", OUTCOMES, id_col="key")
    df["note"] = io.text_or_none(df["note"]) if "note" in df.columns else None
    df = report.reject_mask(df, df["note"].map(lambda v: v is not None and len(v) > 2000).to_numpy(dtype=bool),
                            "note", "absurd_value", "note longer than 2000 characters", "key")
    df = io.check_unique(df, report, ["household_id", "visited_at"], id_col="key")
    io.refuse_empty(report, mapping, len(df), "restricted.care_visits")
    cols = {"household_id": "text", "worker_id": "text", "visited_at": "timestamptz", "outcome": "text",
            "note": "text"}
    stage(conn, "stg_care_visits", cols, df[list(cols)])
    cur = conn.execute("""
        INSERT INTO restricted.care_visits (household_id, worker_id, visited_at, outcome, note)
        SELECT s.household_id, s.worker_id, s.visited_at, s.outcome, s.note
          FROM stg_care_visits s
         WHERE NOT EXISTS (SELECT 1 FROM restricted.care_visits v
                            WHERE v.household_id = s.household_id AND v.visited_at = s.visited_at)
    """)
    inserted = cur.rowcount
    report.finish(len(df))
    if inserted < len(df):
        report.note(f"{len(df) - inserted} visits were already recorded (kept, not inserted twice)")
    report.seconds = time.perf_counter() - t0
    return report


def rebuild_viewsheds(conn: psycopg.Connection) -> int:
    """Every camera's viewshed (``camera_viewsheds``) after buildings or cameras changed."""
    return int(conn.execute("SELECT camera_viewsheds_rebuild()").fetchone()[0])
