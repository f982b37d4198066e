"""population.csv -> restricted.persons (pseudonymous; reload = replace).

Replaced by DELETE + INSERT in the load's transaction (no TRUNCATE: its ACCESS EXCLUSIVE lock would
queue the population views' readers behind the whole load); readers see the old rows until commit.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg

from gis.loaders import io
from gis.loaders.db import ids_in, stage
from gis.loaders.io import Mapping
from gis.loaders.report import LayerReport

log = logging.getLogger(__name__)

CARE_FLAGS = ("disabled", "low_income", "living_alone", "mental_health", "community_correction")


def load_population(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    report = LayerReport(layer="population", source=str(path))
    df = io.read_table(path, mapping, report)
    io.require_columns(df, ("person_id", "building_id", "birth_year", "residence"), path)
    pid = "person_id"
    df[pid] = io.text_or_none(df[pid])
    df = io.check_required(df, report, pid, id_col=pid)
    df = io.check_unique(df, report, [pid], id_col=pid)
    df["building_id"] = io.text_or_none(df["building_id"])
    df = io.check_required(df, report, "building_id", id_col=pid)
    df = io.check_enum(df, report, "building_id", ids_in(conn, "buildings"), id_col=pid, reason="unknown_reference")
    df = io.check_numeric(
        df, report, "birth_year", lo=1880, hi=date.today().year, required=True, integer=True, id_col=pid
    )
    df = io.check_numeric(df, report, "unit", lo=0, hi=10_000, integer=True, id_col=pid)
    df = io.check_numeric(df, report, "floor", lo=-10, hi=200, integer=True, id_col=pid)
    df["sex"] = io.text_or_none(df["sex"]) if "sex" in df.columns else None
    df = io.check_enum(df, report, "sex", ("M", "F"), required=False, id_col=pid)
    df = io.check_enum(df, report, "residence", ("registered", "floating"), id_col=pid)
    flags = (df["care_flags"] if "care_flags" in df.columns else pd.Series("", index=df.index)).fillna("")
    parts = flags.astype(str).str.split(";").map(lambda xs: [x.strip() for x in xs if x.strip()])
    unknown = parts.map(lambda xs: [x for x in xs if x not in CARE_FLAGS])
    df = report.reject_mask(
        df,
        (unknown.map(len) > 0).to_numpy(),
        "care_flags",
        "unknown_value",
        lambda b: [f"care flag(s) {', '.join(unknown[i])} not in {', '.join(CARE_FLAGS)}" for i in b.index],
        id_col=pid,
        value_col="care_flags",
    )
    df["care_flags"] = parts[df.index].map(lambda xs: "{" + ",".join(xs) + "}")
    cols = {
        "person_id": "text",
        "building_id": "text",
        "unit": "integer",
        "floor": "integer",
        "birth_year": "integer",
        "sex": "text",
        "residence": "text",
        "care_flags": "text[]",
    }
    stage(conn, "stg_persons", cols, df[list(cols)])
    conn.execute("DELETE FROM restricted.persons")
    cur = conn.execute(f"""
        INSERT INTO restricted.persons ({", ".join(cols)})
        SELECT {", ".join(cols)} FROM stg_persons
    """)  # noqa: S608 - constant column list
    report.finish(cur.rowcount)
    report.seconds = time.perf_counter() - t0
    return report


#: layers whose load changes the population counts (persons, their buildings, grid cells, communities)
POPULATION_LAYERS = ("communities", "grid_cells", "buildings", "population")


def refresh_suppression(conn: psycopg.Connection) -> int:
    """Recompute the stored suppression of the public population views
    (``population_hidden_refresh()``, migration 0010) in the load's transaction, as the owner:
    readers see the old counts with the old suppression until commit. Returns the hidden counts."""
    t0 = time.perf_counter()
    n = conn.execute("SELECT population_hidden_refresh()").fetchone()[0]
    log.info("population suppression refreshed: %d counts hidden (%.1f s)", n, time.perf_counter() - t0)
    return int(n)
