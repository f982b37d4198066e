"""Staging + upsert plumbing shared by the loaders (psycopg 3, one transaction per load)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd
import psycopg
from psycopg import sql

from gis.loaders.io import copy_frame

log = logging.getLogger(__name__)


def stage(conn: psycopg.Connection, name: str, columns: dict[str, str], df: pd.DataFrame) -> int:
    """Create temp table ``name`` (dropped at commit) with ``columns`` {name: type} and COPY ``df``."""
    cols = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns.items())
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    conn.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(sql.Identifier(name), cols))
    return copy_frame(conn, name, df[list(columns)])


class Upserted(NamedTuple):
    upserted: int
    deleted: int
    kept_referenced: int = 0  # rows absent from the stage, kept because ``keep_referenced_by`` points at them


def upsert_from_stage(
    conn: psycopg.Connection,
    table: str,
    stage_table: str,
    columns: Sequence[str],
    select_exprs: Sequence[str],
    *,
    key: str = "id",
    delete_missing: bool = True,
    keep: Sequence[str] = (),
    keep_referenced_by: tuple[str, str, str] | None = None,
) -> Upserted:
    """INSERT ... SELECT from the stage with ON CONFLICT (key) DO UPDATE; optionally delete the rows
    whose key is not in the stage (the delivery replaces the layer).

    ``keep``: keys never deleted — the ids of features the delivery has but that were rejected (a
    defective new version must not erase the good old row). ``keep_referenced_by`` = (schema,
    table, column): rows still referenced there (a NOT NULL foreign key) are kept, not deleted, and
    counted in ``kept_referenced``.
    ``select_exprs`` are trusted SQL expressions written in the loaders (never user input).
    """
    target = sql.Identifier(table)
    k = sql.Identifier(key)
    col_ids = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    updates = sql.SQL(", ").join(
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in columns if c != key
    )
    select = sql.SQL(", ").join(sql.SQL(e) for e in select_exprs)  # noqa: S608 - loader constants
    deleted = kept = 0
    if delete_missing:
        missing = sql.SQL("NOT EXISTS (SELECT 1 FROM {} s WHERE s.{} = t.{}) AND NOT (t.{} = ANY(%s))").format(
            sql.Identifier(stage_table), k, k, k
        )
        if keep_referenced_by is not None:
            schema, ref_table, ref_col = keep_referenced_by
            referenced = sql.SQL("EXISTS (SELECT 1 FROM {}.{} r WHERE r.{} = t.{})").format(
                sql.Identifier(schema), sql.Identifier(ref_table), sql.Identifier(ref_col), k
            )
            kept = conn.execute(
                sql.SQL("SELECT count(*) FROM {} t WHERE {} AND {}").format(target, missing, referenced), [list(keep)]
            ).fetchone()[0]
            missing = sql.SQL("{} AND NOT {}").format(missing, referenced)
        deleted = conn.execute(sql.SQL("DELETE FROM {} t WHERE {}").format(target, missing), [list(keep)]).rowcount
    cur = conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} s ON CONFLICT ({}) DO UPDATE SET {}").format(
            target, col_ids, select, sql.Identifier(stage_table), k, updates
        )
    )
    return Upserted(cur.rowcount, deleted, kept)


def ids_in(conn: psycopg.Connection, table: str, column: str = "id") -> set[str]:
    rows = conn.execute(sql.SQL("SELECT {} FROM {}").format(sql.Identifier(column), sql.Identifier(table)))
    return {r[0] for r in rows}


def quiet(conn: psycopg.Connection) -> None:
    """No NOTIFY from triggers for the rest of this transaction (bulk historical loads)."""
    conn.execute("SELECT set_config('onemap.quiet', 'on', true)")
    conn.execute("SELECT set_config('onemap.actor', 'loader', true)")
