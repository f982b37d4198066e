"""gis.events / gis.dberrors: event writes raise core.errors (no SQLSTATE reaches a caller), and
the categories come from table event_category (the API accepts what the table holds)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from core.errors import ConflictError, InputError, NotFoundError
from gis import events
from gis.dberrors import db_errors
from tests.api_support import LAT0, LON0, auth

SEEDED = {"city_appearance", "street_order", "sanitation", "municipal_facilities", "greening",
          "illegal_construction", "safety_hazard", "dispute",
          # security incidents counted by the community targets (migration 0009_civil)
          "burglary", "theft", "family_conflict"}


def _event(**kw: object) -> events.NewEvent:
    args: dict = {"id": "ETEST1", "category": "sanitation", "lon": 117.3925, "lat": 32.9315}
    return events.NewEvent(**{**args, **kw})


def test_categories_are_the_table(sa_conn) -> None:  # noqa: ANN001
    assert set(events.categories(sa_conn)) == SEEDED


def test_create_and_errors(sa_conn) -> None:  # noqa: ANN001
    assert events.create_event(sa_conn, _event(worker_id="W001"), actor="tester") == "ETEST1"
    with pytest.raises(ConflictError, match="'ETEST1' already exists"), sa_conn.begin_nested():
        events.create_event(sa_conn, _event(), actor="tester")
    with pytest.raises(InputError, match="unknown worker_id 'W999'"), sa_conn.begin_nested():
        events.create_event(sa_conn, _event(id="ETEST2", worker_id="W999"), actor="tester")
    # the foreign key on events.category, translated: the message names the field
    with pytest.raises(InputError, match="unknown category 'nonsense'") as err, sa_conn.begin_nested():
        events.create_event(sa_conn, _event(id="ETEST3", category="nonsense"), actor="tester")
    assert err.value.extra["field"] == "category"


def test_status_changes_and_errors(sa_conn) -> None:  # noqa: ANN001
    events.create_event(sa_conn, _event(), actor="tester")
    events.change_status(sa_conn, "ETEST1", "accepted", actor="op", note="ok")
    with pytest.raises(ConflictError) as err, sa_conn.begin_nested():
        events.change_status(sa_conn, "ETEST1", "closed", actor="op")
    assert err.value.extra == {"allowed": ["dispatched", "rejected"], "current": "accepted"}
    with pytest.raises(NotFoundError), sa_conn.begin_nested():
        events.change_status(sa_conn, "ENOPE", "accepted", actor="op")
    with pytest.raises(InputError, match="unknown worker_id"), sa_conn.begin_nested():
        events.change_status(sa_conn, "ETEST1", "dispatched", actor="op", worker_id="W999")
    events.change_status(sa_conn, "ETEST1", "dispatched", actor="op", worker_id="W002")
    h = events.history(sa_conn, "ETEST1")
    assert h["status"] == "dispatched" and h["allowed"] == ["en_route", "handled"]
    assert [(r["from_status"], r["to_status"]) for r in h["history"]][-2:] == [
        ("reported", "accepted"), ("accepted", "dispatched")]
    with pytest.raises(NotFoundError):
        events.history(sa_conn, "ENOPE")


def test_database_errors_translated(sa_conn) -> None:  # noqa: ANN001
    events.create_event(sa_conn, _event(), actor="tester")
    # the database's own lifecycle check (SQLSTATE OM409), bypassing gis.lifecycle
    with pytest.raises(ConflictError, match="reported -> closed") as err, sa_conn.begin_nested():
        with db_errors():
            sa_conn.execute(sa.text("UPDATE events SET status = 'closed' WHERE id = 'ETEST1'"))
    assert err.value.extra == {"allowed": ["accepted", "rejected"], "current": "reported"}
    with pytest.raises(ConflictError, match="workers id 'W001' already exists"), sa_conn.begin_nested():
        with db_errors():
            sa_conn.execute(sa.text("INSERT INTO workers (id, name, kind) VALUES ('W001', 'x', 'grid_worker')"))
    with pytest.raises(InputError, match="invalid value"), sa_conn.begin_nested():
        with db_errors():
            sa_conn.execute(sa.text("INSERT INTO workers (id, name, kind) VALUES ('W998', 'x', 'cat')"))
    with pytest.raises(sa.exc.ProgrammingError), sa_conn.begin_nested():  # not input: passes through
        with db_errors():
            sa_conn.execute(sa.text("SELECT no_such_column FROM workers"))


def test_api_takes_categories_from_the_table(client, tokens, api_db_url) -> None:  # noqa: ANN001
    engine = sa.create_engine(api_db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO event_category (code, label_zh, deadline_hours) "
                                 "VALUES ('noise', '噪音', 24)"))
        events._cache.clear()  # noqa: SLF001 - the 60 s cache of the app's earlier reads
        body = {"category": "noise", "lon": LON0 + 0.001, "lat": LAT0 + 0.001}
        r = client.post("/events", json=body, headers=auth(tokens, "operator"))
        assert r.status_code == 201, r.text
        assert r.json()["properties"]["category"] == "noise"
        r = client.post("/events", json={**body, "category": "loud"}, headers=auth(tokens, "operator"))
        assert r.status_code == 422
        assert [e["loc"] for e in r.json()["errors"]] == [["body", "category"]]
        assert "'noise'" in r.json()["errors"][0]["msg"]
    finally:  # the category stays in this module's database (its event has an append-only history)
        engine.dispose()
        events._cache.clear()  # noqa: SLF001
