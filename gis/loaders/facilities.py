"""Facilities (community service stations and terminals, elderly care, clinics, schools, police
posts, convenience stores): ``facilities.gpkg`` -> table ``facilities`` (migration 0007_access).

Points; ``kind`` must be one of ``facility_kind``. ``building_id`` is the delivered one when the
database knows it, otherwise the building the point lies in (None outside buildings);
``community_id`` is that building's community, else the community the point lies in. Fields other
than ``id``, ``kind``, ``name``, ``building_id``, ``community`` are not read. Replaces the layer
(upsert by id, then delete ids the delivery no longer has, except rejected ones).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import psycopg

from core.delivery.read import FieldSpec
from gis.loaders import io
from gis.loaders.db import ids_in, stage
from gis.loaders.io import Mapping
from gis.loaders.reference import _finish, _replace_layer
from gis.loaders.report import LayerReport

SPECS = [
    FieldSpec("id", "str", required=True),
    FieldSpec("kind", "str", required=True),
    FieldSpec("name", "str"),
    FieldSpec("building_id", "str"),
    FieldSpec("community", "str"),
]


def load_facilities(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping()) -> LayerReport:
    t0 = time.perf_counter()
    report = LayerReport(layer="facilities", source=str(path))
    gdf = io.read_vector(Path(path), mapping, report, SPECS, "point")
    io.require_columns(gdf, ("id", "kind"), path)
    kinds = [r[0] for r in conn.execute("SELECT kind FROM facility_kind ORDER BY kind")]
    gdf = io.check_enum(gdf, report, "kind", kinds)
    io.refuse_empty(report, mapping, len(gdf), "facilities")
    building = io.text_or_none(gdf["building_id"]) if "building_id" in gdf.columns else None
    df = pd.DataFrame({"id": gdf["id"], "kind": gdf["kind"]})
    df["name"] = io.text_or_none(gdf["name"]) if "name" in gdf.columns else None
    df["building_id"] = building
    df["wkb"] = io.wkb_hex_4490(gdf.geometry)
    if building is not None:  # a building the database does not know: found from the point below
        known = ids_in(conn, "buildings")
        df.loc[~df["building_id"].isin(known), "building_id"] = None
    stage(conn, "stg_facilities", {"id": "text", "kind": "text", "name": "text", "building_id": "text",
                                   "wkb": "text"}, df)
    result = _replace_layer(conn, report, "facilities", ["id", "kind", "name", "building_id"], df)
    assign_facilities(conn)
    return _finish(conn, report, t0, result)


def assign_facilities(conn: psycopg.Connection) -> None:
    """building_id where missing (the building the point lies in), then community_id: the
    building's community (a facility serves the community its building belongs to), else the
    community the point lies in."""
    conn.execute("""
        UPDATE facilities f
           SET building_id = (SELECT b.id FROM buildings b WHERE ST_Intersects(b.geom_4548, f.geom_4548)
                               ORDER BY b.id LIMIT 1)
         WHERE f.building_id IS NULL
    """)
    conn.execute("""
        UPDATE facilities f
           SET community_id = COALESCE(
                   (SELECT b.community_id FROM buildings b WHERE b.id = f.building_id),
                   (SELECT c.id FROM communities c WHERE ST_Intersects(c.geom_4548, f.geom_4548)
                     ORDER BY c.id LIMIT 1))
    """)
