"""Loaders of the civil-affairs deliveries (issue 16): surveys, care households and visits, each row
loaded or rejected with a reason code; empty deliveries refused; visits appended idempotently."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from core.delivery.errors import NothingAcceptedError
from gis.loaders import load_layer
from tests.gis_helpers import libpq


@pytest.fixture()
def world(pg_url: str, tiny_loaded):  # noqa: ANN001, ANN201
    url = libpq(pg_url)
    with psycopg.connect(url) as c:
        comm = [r[0] for r in c.execute("SELECT id FROM communities ORDER BY id LIMIT 2")]
        blds = [r[0] for r in c.execute("SELECT id FROM buildings ORDER BY id LIMIT 2")]
        wrk = c.execute("SELECT id FROM workers ORDER BY id LIMIT 1").fetchone()[0]
    yield url, comm, blds, wrk
    with psycopg.connect(url) as c:
        c.execute("DELETE FROM surveys")
        c.execute("DELETE FROM restricted.care_households")


def _rejects(report) -> dict[str, str]:  # noqa: ANN001
    return {i.id: i.code for layer in report.layers for i in layer.rejects}


def test_surveys(world, tmp_path: Path) -> None:  # noqa: ANN001
    url, (c1, c2), _, _ = world
    src = tmp_path / "surveys.csv"
    src.write_text(
        "community_id,period,topic,respondents,satisfied\n"
        f"{c1},2026-01-01,overall,100,91\n"
        f"{c2},2026-01-01,,80,70\n"
        f"NOPE,2026-01-01,overall,50,40\n"
        f"{c1},2026-13-01,overall,50,40\n"
        f"{c1},2026-04-01,overall,0,0\n"
        f"{c1},2026-04-01,security,50,60\n"
        f"{c1},2026-01-01,overall,10,9\n", encoding="utf-8")
    report = load_layer("surveys", src, url=url)
    layer = report.layers[0]
    assert layer.loaded == 2 and layer.source_rows == 7
    assert _rejects(report) == {"NOPE/2026-01-01/overall": "unknown_reference",
                                f"{c1}/2026-13-01/overall": "unparsable_value",
                                f"{c1}/2026-04-01/overall": "absurd_value",
                                f"{c1}/2026-04-01/security": "absurd_value",
                                f"{c1}/2026-01-01/overall": "duplicate_id"}
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT community_id, topic, respondents, satisfied FROM surveys ORDER BY 1").fetchall()
    assert rows == [(c1, "overall", 100, 91), (c2, "overall", 80, 70)]
    # a delivery of the same period replaces that period only
    src.write_text(f"community_id,period,respondents,satisfied\n{c1},2026-01-01,120,100\n{c1},2026-04-01,50,45\n",
                   encoding="utf-8")
    report = load_layer("surveys", src, url=url)
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT community_id, period::text, respondents FROM surveys ORDER BY 1, 2").fetchall()
    assert rows == [(c1, "2026-01-01", 120), (c1, "2026-04-01", 50)]
    assert any("deleted" in n for n in report.layers[0].notes)
    src.write_text("community_id,period,respondents,satisfied\nNOPE,2026-01-01,1,1\n", encoding="utf-8")
    with pytest.raises(NothingAcceptedError):
        load_layer("surveys", src, url=url)


def test_care_households_and_visits(world, tmp_path: Path) -> None:  # noqa: ANN001
    url, _, (b1, b2), w = world
    hh = tmp_path / "care_households.csv"
    hh.write_text(
        "id,building_id,category,interval_days,worker_id,enrolled_on\n"
        f"H00001,{b1},gaoling,,{w},2026-01-05\n"
        f"H00002,{b2},dujv,7,,\n"
        f"H00003,B_NOPE,dibao,30,,\n"
        f"H00004,{b1},vip,30,,\n"
        f"H00005,{b1},dibao,400,,\n"
        f"H 6,{b1},dibao,30,,\n"
        f"H00007,{b1},dibao,30,W_NOPE,\n", encoding="utf-8")
    report = load_layer("care_households", hh, url=url)
    assert report.layers[0].loaded == 2
    assert _rejects(report) == {"H00003": "unknown_reference", "H00004": "unknown_value",
                                "H00005": "absurd_value", "H 6": "unparsable_value", "H00007": "unknown_reference"}
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT id, interval_days, worker_id, enrolled_on::text FROM restricted.care_households "
                         "ORDER BY id").fetchall()
    assert rows[0] == ("H00001", 30, w, "2026-01-05") and rows[1][:3] == ("H00002", 7, None)
    visits = tmp_path / "care_visits.csv"
    visits.write_text(
        "household_id,worker_id,visited_at,outcome\n"
        f"H00001,{w},2026-05-05T10:00:00+08:00,visited\n"
        f"H00001,{w},2026-06-05 10:00:00,\n"
        f"H00009,{w},2026-06-05T10:00:00+08:00,visited\n"
        f"H00002,,yesterday,visited\n"
        f"H00002,,2026-06-05T10:00:00+08:00,partied\n", encoding="utf-8")
    report = load_layer("care_visits", visits, url=url)
    assert report.layers[0].loaded == 2
    assert sorted(_rejects(report).values()) == ["unknown_reference", "unknown_value", "unparsable_value"]
    again = load_layer("care_visits", visits, url=url)  # idempotent: nothing inserted twice
    assert again.layers[0].loaded == 2 and any("already recorded" in n for n in again.layers[0].notes)
    with psycopg.connect(url) as c:
        got = c.execute("SELECT visited_at AT TIME ZONE 'Asia/Shanghai', outcome FROM restricted.care_visits "
                        "ORDER BY visited_at").fetchall()
    assert [(str(t), o) for t, o in got] == [("2026-05-05 10:00:00", "visited"), ("2026-06-05 10:00:00", "visited")]
    empty = tmp_path / "empty.csv"
    empty.write_text("id,building_id,category\n", encoding="utf-8")
    with pytest.raises(NothingAcceptedError):
        load_layer("care_households", empty, url=url)
    load_layer("care_households", empty, url=url, allow_empty=True)
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM restricted.care_visits").fetchone()[0] == 0
