"""access.share targets (issue 16): the walking-access share of gis.access as a level target."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import InputError
from gis import access, targets

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def _target(**kw: object) -> targets.Target:
    raw = {"id": "acc", "metric": "access.share", "kind": "service_station", "minutes": 10, "community": "each",
           "level": 0.5, "deadline": "2026-10-31"} | kw
    return targets.parse_target(raw, "t.yaml")


def test_access_share_equals_gis_access(sa_conn) -> None:  # noqa: ANN001
    c = sa_conn
    c.exec_driver_sql("INSERT INTO facilities (id, kind, name, geom) SELECT 'FS_T', 'service_station', 't', "
                      "ST_Transform(ST_PointOnSurface(geom_4548), 4490) FROM buildings ORDER BY id LIMIT 1")
    t = _target()
    out = targets.evaluate(c, [t], AS_OF)
    rows = {r["community_id"]: r for r in access.community_access(c, "service_station", 1.2) if r["grp"] == "total"}
    res = out["targets"][0]["results"]
    assert res and out["targets"][0]["baseline"] is None
    for r in res:
        share = rows[r["community_id"]]["share_10"] if r["community_id"] in rows else None
        assert r["current_value"] == share
        want = "no_data" if share is None else ("met" if share >= 0.5 else "off_track")
        assert r["status"] == want
    district = targets.evaluate(c, [_target(community="all")], AS_OF)["targets"][0]["results"][0]
    pub = [r for r in rows.values() if r["within_10"] is not None and r["residents"]]
    want = sum(r["within_10"] for r in pub) / sum(r["residents"] for r in pub) if pub else None
    assert district["current_value"] == (pytest.approx(want) if want is not None else None)


@pytest.mark.parametrize(("kw", "needle"), [
    ({"level": None, "change": 0.2}, "level"),
    ({"kind": "castle"}, "kind"),
    ({"minutes": 7}, "minutes"),
    ({"speed": 2.0}, "speed"),
    ({"residents": "cats"}, "residents"),
])
def test_access_share_field_errors(kw: dict, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        _target(**kw)
