"""Events lifecycle enforced by the database, append-only history, NOTIFY payloads, GPS partitions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from gis import lifecycle
from tests import gis_world as W
from tests.gis_helpers import libpq

INSERT_EVENT = """INSERT INTO events (id, category, priority, source, geom)
                  VALUES (%s, 'sanitation', 'B', 'resident',
                          ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4548), 4490))"""


def _new_event(c: psycopg.Connection, eid: str) -> None:
    c.execute(INSERT_EVENT, (eid, W.X0 + 50, W.Y0 + 50))


def test_legal_path_with_reopen(tiny_loaded, conn: psycopg.Connection) -> None:  # noqa: ANN001
    _new_event(conn, "EL0001")
    row = conn.execute(
        "SELECT status, building_id, grid_id, community_id, deadline_at - reported_at "
        "FROM events WHERE id = 'EL0001'"
    ).fetchone()
    assert row[:4] == ("reported", "B000001", "G001", "C01")  # located by the insert trigger
    assert row[4] == timedelta(hours=24)  # sanitation deadline
    path = ["accepted", "dispatched", "handled", "verified", "dispatched", "handled", "verified", "closed"]
    t0 = datetime(2026, 3, 5, tzinfo=UTC)
    for k, status in enumerate(path):
        conn.execute(
            "SELECT event_set_status(%s, %s, %s, %s, %s)",
            ("EL0001", status, "op1", f"step {k}", t0 + timedelta(hours=k)),
        )
    hist = conn.execute(
        "SELECT from_status, to_status, actor, note, at FROM event_status_history "
        "WHERE event_id = 'EL0001' ORDER BY id"
    ).fetchall()
    assert [(h[0], h[1]) for h in hist] == list(
        zip([None, "reported", *path[:-1]], ["reported", *path], strict=True)
    )
    assert hist[1][2:] == ("op1", "step 0", t0)
    ev = conn.execute(
        "SELECT reopened_count, closed_at, dispatched_at FROM events WHERE id = 'EL0001'"
    ).fetchone()
    assert ev == (1, t0 + timedelta(hours=7), t0 + timedelta(hours=4))


@pytest.mark.parametrize("src", lifecycle.STATUSES)
def test_every_illegal_transition_refused(tiny_loaded, conn: psycopg.Connection, src: str) -> None:  # noqa: ANN001
    _new_event(conn, "EL0002")
    walk = {
        "reported": [],
        "accepted": ["accepted"],
        "dispatched": ["accepted", "dispatched"],
        "en_route": ["accepted", "dispatched", "en_route"],
        "on_scene": ["accepted", "dispatched", "en_route", "on_scene"],
        "handled": ["accepted", "dispatched", "handled"],
        "verified": ["accepted", "dispatched", "handled", "verified"],
        "closed": ["accepted", "dispatched", "handled", "verified", "closed"],
        "rejected": ["rejected"],
    }[src]
    for s in walk:
        conn.execute("SELECT event_set_status('EL0002', %s)", (s,))
    for dst in lifecycle.STATUSES:
        if dst == src or lifecycle.is_allowed(src, dst):
            continue
        conn.execute("SAVEPOINT sp")
        with pytest.raises(psycopg.Error) as err:
            conn.execute("UPDATE events SET status = %s WHERE id = 'EL0002'", (dst,))
        conn.execute("ROLLBACK TO SAVEPOINT sp")
        assert err.value.sqlstate == lifecycle.ILLEGAL_TRANSITION_SQLSTATE
        detail = json.loads(err.value.diag.message_detail)
        assert detail == {
            "event_id": "EL0002",
            "from": src,
            "to": dst,
            "allowed": sorted(lifecycle.allowed_transitions(src)),
        }
        assert f"{src} -> {dst}" in err.value.diag.message_primary


def test_history_is_append_only(tiny_loaded, conn: psycopg.Connection) -> None:  # noqa: ANN001
    for stmt in ("UPDATE event_status_history SET note = 'x'", "DELETE FROM event_status_history"):
        conn.execute("SAVEPOINT sp")
        with pytest.raises(psycopg.Error) as err:
            conn.execute(stmt)
        conn.execute("ROLLBACK TO SAVEPOINT sp")
        assert err.value.sqlstate == lifecycle.APPEND_ONLY_SQLSTATE


def _listen(url: str) -> psycopg.Connection:
    listener = psycopg.connect(url, autocommit=True)
    listener.execute("LISTEN onemap")
    return listener


def _drain(listener: psycopg.Connection, expect: int) -> list[dict]:
    got = []
    for n in listener.notifies(timeout=10, stop_after=expect):
        assert len(n.payload.encode()) < 8000
        got.append(json.loads(n.payload))
    return got


def test_notify_event_status_alarm_position(tiny_loaded, pg_url: str) -> None:  # noqa: ANN001
    url = libpq(pg_url)
    listener = _listen(url)
    try:
        with psycopg.connect(url) as c:
            _new_event(c, "EN0001")
        (msg,) = _drain(listener, 1)
        assert msg["type"] == "event" and msg["id"] == "EN0001" and msg["grid_id"] == "G001"
        assert msg["lon"] == pytest.approx(W.lonlat(50, 50)[0], abs=1e-6)
        with psycopg.connect(url) as c:
            c.execute("SELECT event_set_status('EN0001', 'accepted', 'op7')")
        (msg,) = _drain(listener, 1)
        assert msg == {
            **msg,
            "type": "event_status",
            "id": "EN0001",
            "from": "reported",
            "to": "accepted",
            "actor": "op7",
        }
        # a batch of fixes -> one 'position' message with the latest fix per worker
        t = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)
        with psycopg.connect(url) as c:
            with c.cursor() as cur:
                cur.executemany(
                    """INSERT INTO gps_fixes (device_id, worker_id, t, geom)
                                   VALUES (%s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4490))""",
                    [("D003", "W003", t + timedelta(seconds=s), *W.lonlat(340, 340)) for s in (0, 30)],
                )
            c.execute(
                """INSERT INTO gps_fixes (device_id, worker_id, t, geom)
                         SELECT 'D002', 'W002', %s + make_interval(secs => g),
                                ST_SetSRID(ST_MakePoint(%s, %s), 4490)
                           FROM generate_series(0, 50) g""",
                (t, *W.lonlat(300, 120)),
            )
        msgs = _drain(listener, 3)
        assert all(m["type"] == "position" for m in msgs)
        last = msgs[-1]
        assert last["count"] == 1 and last["positions"][0]["worker_id"] == "W002"
        assert last["positions"][0]["t"].startswith("2026-03-03T01:00:50")
        # an alarm (W003 dwells again in the no-parking zone) via the incremental path
        with psycopg.connect(url) as c:
            c.execute(
                """INSERT INTO gps_fixes (device_id, worker_id, t, geom)
                         SELECT 'D003', 'W003', %s + make_interval(secs => 30 * g),
                                ST_SetSRID(ST_MakePoint(%s, %s), 4490)
                           FROM generate_series(2, 30) g""",
                (t, *W.lonlat(340, 340)),
            )
        # the live-alarm trigger on gps_fixes (migration 0004_live_ops) raises the dwell alarm with
        # the batch: the batch's position message and that alarm, nothing else
        msgs = _drain(listener, 2)
        assert sorted(m["type"] for m in msgs) == ["alarm", "position"], msgs
        (msg,) = [m for m in msgs if m["type"] == "alarm"]
        assert msg["kind"] == "no_parking_dwell" and msg["worker_id"] == "W003"
        assert msg["t_start"].startswith("2026-03-03T01:00:00")
        # the incremental batch evaluation sees the same episode: not raised (nor sent) twice
        with psycopg.connect(url) as c:
            new = c.execute("SELECT process_geofence_alarms()").fetchone()[0]
            n_alarms = c.execute("SELECT count(*) FROM alarms WHERE kind = 'no_parking_dwell' "
                                 "AND worker_id = 'W003' AND t_start >= '2026-03-03'").fetchone()[0]
        assert new == 0 and n_alarms == 1
        assert [m for m in (json.loads(n.payload) for n in listener.notifies(timeout=0.5))
                if m["type"] == "alarm"] == []
        # bulk loads are quiet
        with psycopg.connect(url) as c:
            c.execute("SELECT set_config('onemap.quiet', 'on', true)")
            _new_event(c, "EN0002")
        assert list(listener.notifies(timeout=0.5)) == []
    finally:
        listener.close()
        with psycopg.connect(url) as c:  # leave the tiny district as loaded
            c.execute("SELECT set_config('onemap.quiet', 'on', true)")
            c.execute("DELETE FROM alarms WHERE t_start >= '2026-03-03'")
            c.execute("DELETE FROM gps_fixes WHERE t >= '2026-03-03'")
            c.execute("SELECT refresh_worker_positions()")
            _purge_events(c, "EN")


def _purge_events(c: psycopg.Connection, prefix: str) -> None:
    """Test cleanup only: the owner switches the append-only trigger off to remove test rows."""
    c.execute("ALTER TABLE event_status_history DISABLE TRIGGER event_status_history_append_only")
    c.execute("DELETE FROM event_status_history WHERE event_id LIKE %s", (prefix + "%",))
    c.execute("ALTER TABLE event_status_history ENABLE TRIGGER event_status_history_append_only")
    c.execute("DELETE FROM events WHERE id LIKE %s", (prefix + "%",))


def test_bulk_event_insert_sends_one_summary(tiny_loaded, pg_url: str) -> None:  # noqa: ANN001
    url = libpq(pg_url)
    listener = _listen(url)
    try:
        with psycopg.connect(url) as c:
            c.execute(
                """INSERT INTO events (id, category, priority, source, geom)
                         SELECT 'EB' || g, 'greening', 'D', 'camera',
                                ST_Transform(ST_SetSRID(ST_MakePoint(%s + g, %s), 4548), 4490)
                           FROM generate_series(1, 50) g""",
                (W.X0 + 10, W.Y0 + 10),
            )
            c.rollback()
        assert list(listener.notifies(timeout=0.5)) == []  # nothing for a rolled back transaction
        with psycopg.connect(url) as c:
            c.execute(
                """INSERT INTO events (id, category, priority, source, geom)
                         SELECT 'EB' || g, 'greening', 'D', 'camera',
                                ST_Transform(ST_SetSRID(ST_MakePoint(%s + g, %s), 4548), 4490)
                           FROM generate_series(1, 50) g""",
                (W.X0 + 10, W.Y0 + 10),
            )
        (msg,) = _drain(listener, 1)
        assert msg["type"] == "event" and msg["bulk"] is True and msg["count"] == 50
        assert list(listener.notifies(timeout=0.5)) == []
    finally:
        listener.close()
        with psycopg.connect(url) as c:
            _purge_events(c, "EB")


def test_gps_partitions_created_and_default_rows_moved(tiny_loaded, conn: psycopg.Connection) -> None:  # noqa: ANN001
    far = datetime(2031, 5, 17, 3, 0, tzinfo=UTC)
    conn.execute(
        """INSERT INTO gps_fixes (device_id, worker_id, t, geom)
                    VALUES ('D002', 'W002', %s, ST_SetSRID(ST_MakePoint(117.39, 32.93), 4490))""",
        (far,),
    )
    where = conn.execute("SELECT tableoid::regclass::text FROM gps_fixes WHERE t = %s", (far,)).fetchone()[0]
    assert where == "gps_fixes_default"
    assert (
        conn.execute("SELECT ensure_gps_partitions(%s, %s)", (far, far + timedelta(days=20))).fetchone()[0]
        == 2
    )
    where = conn.execute("SELECT tableoid::regclass::text FROM gps_fixes WHERE t = %s", (far,)).fetchone()[0]
    assert where == "gps_fixes_p203105"
    assert conn.execute("SELECT count(*) FROM gps_fixes_default").fetchone()[0] == 0
    # indexes of the parent exist on the new partition
    idx = {
        r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'gps_fixes_p203105'")
    }
    assert (
        any("brin" in i for i in idx)
        and any("gist" in i for i in idx)
        and any("worker_id, t" in i for i in idx)
    )
