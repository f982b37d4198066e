"""Reloading layers while the API serves them (issue 12, "Reloads while serving").

The tiny district is loaded into a database of its own, a real uvicorn serves it as onemap_api
(statement timeout 2 s, so a read queued behind a loader's lock fails fast: 503), and reader
threads loop over buildings, events and two analytics routes while buildings, population and a
30 000-event delivery are reloaded. Every answer must be 200 with either the old or the new row
count, the new rows visible once the load has committed, and ``pg_locks`` (polled throughout) must
never show an ACCESS EXCLUSIVE lock on the live tables nor a reader waiting for a lock on them.

``load gps --replace`` (a month-partitioned table) swaps its new partitions in at the end: there
ACCESS EXCLUSIVE on ``gps_fixes`` is allowed, but only inside that final swap (after every fix is
loaded and indexed), and the GPS readers (mileage, track, nearest patrollers) still get only 200s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from pathlib import Path

import geopandas as gpd
import httpx
import numpy as np
import pandas as pd
import psycopg
import pytest

from tests import gis_world
from tests.api_support import make_settings, running_server
from tests.gis_helpers import libpq

DB_NAME = "onemap_reload_test"
N_BIG = 30_000
LIVE_TABLES = ["buildings", "events", "event_status_history", "persons"]
STEPS = ["reported_at", "accepted_at", "dispatched_at", "handled_at", "verified_at", "closed_at"]


def write_events_csv(path: Path, n: int, seed: int = 1) -> Path:
    """``n`` events with legal lifecycles inside the tiny district (ids X00000000...)."""
    rng = np.random.default_rng(seed)
    reported = pd.Series(pd.Timestamp(gis_world.DAY - timedelta(days=60))
                         + pd.to_timedelta(rng.uniform(0, 59 * 86400, n), unit="s"))
    stage = rng.integers(0, 6, n)
    df = pd.DataFrame({
        "id": [f"X{k:08d}" for k in range(n)],
        "category": np.array(["sanitation", "street_order", "greening", "dispute"])[rng.integers(0, 4, n)],
        "priority": np.array(list("ABCD"))[rng.integers(0, 4, n)],
        "source": "grid_worker",
        "description": "",
        "x": gis_world.X0 + rng.uniform(1, 399, n),
        "y": gis_world.Y0 + rng.uniform(1, 399, n),
        "status": np.array(["reported", "accepted", "dispatched", "handled", "verified", "closed"])[stage],
        "worker_id": "",
    })
    elapsed = np.zeros(n)
    for k, col in enumerate(STEPS):
        elapsed += rng.uniform(0.5, 6, n) if k else 0.0
        stamps = (reported + pd.to_timedelta(elapsed, unit="h")).dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        df[col] = np.where(stage >= k, stamps, "")
    df["rejected_at"] = ""
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def reload_db(pg_server, tiny_delivery: Path) -> Iterator[str]:  # noqa: ANN001 - tests.db_support.PgServer
    from gis import migrate
    from gis.loaders import load_sample

    url = pg_server.create_database(DB_NAME)
    migrate.upgrade(url)
    load_sample(tiny_delivery, url=libpq(url))
    yield url
    pg_server.drop_database(DB_NAME)


@pytest.fixture(scope="module")
def server(reload_db: str, tiles_dir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    import sqlalchemy as sa

    from api.auth import add_user

    engine = sa.create_engine(reload_db)
    token = add_user(engine, "t-reload-admin", "admin")
    engine.dispose()
    settings = make_settings(reload_db, tiles_dir, api_statement_timeout_ms=2000,
                             analytics_per_token=8, rate_limit_per_s=0)  # four reader threads, one token
    assert settings.db.api_database_url and settings.api.api_statement_timeout_ms == 2000  # as onemap_api
    with running_server(settings) as base:
        yield base, {"Authorization": f"Bearer {token}"}


class Readers:
    """Threads reading the API in a loop; every answer is kept as (route, status, count)."""

    ROUTES = {
        "buildings": "/collections/buildings/items?limit=1",
        "events": "/collections/events/items?limit=1",
        "sla": "/analytics/events/sla",
        "population": "/analytics/population?level=grid",
    }

    def __init__(self, base: str, headers: dict[str, str], n_threads: int = 4) -> None:
        self.base, self.headers = base, headers
        self.stop = threading.Event()
        self.seen: list[tuple[str, int, int | None]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n_threads)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=30) as http:
            while not self.stop.is_set():
                for route, path in self.ROUTES.items():
                    r = http.get(path)
                    self.seen.append((route, r.status_code, self.count_of(path, r) if r.status_code == 200 else None))

    def count_of(self, path: str, r: httpx.Response) -> int | None:
        return r.json().get("numberMatched") if "items" in path else None

    def __enter__(self) -> Readers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def counts(self, route: str) -> set[int | None]:
        return {c for r, _, c in self.seen if r == route}


class LockWatch:
    """Polls pg_locks of the database: ACCESS EXCLUSIVE locks on the live tables, and readers
    (ACCESS SHARE) waiting for a lock on them."""

    def __init__(self, url: str, tables: list[str] = LIVE_TABLES) -> None:
        self.url, self.tables = url, tables
        self.stop = threading.Event()
        self.hits: list[tuple[str, str, bool]] = []
        self.stamped: list[tuple[float, str, str, bool]] = []  # (time.monotonic(), *hit)
        self.polls = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                rows = conn.execute(
                    """SELECT c.relname, l.mode, l.granted FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                        WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                          AND c.relname = ANY (%s)
                          AND (l.mode = 'AccessExclusiveLock' OR (NOT l.granted AND l.mode = 'AccessShareLock'))""",
                    [self.tables],
                ).fetchall()
                self.hits += rows
                now = time.monotonic()
                self.stamped += [(now, *row) for row in rows]
                self.polls += 1
                time.sleep(0.01)

    def __enter__(self) -> LockWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - test constants


def _reload_under_reads(
    server: tuple[str, dict[str, str]], url: str, reload: Callable[[], None]
) -> tuple[Readers, LockWatch]:
    base, headers = server
    with LockWatch(url) as locks, Readers(base, headers) as readers:
        while len(readers.seen) < 24:  # the readers are going before the load starts
            time.sleep(0.05)
        reload()
        n_during = len(readers.seen)
        while len(readers.seen) < n_during + 24:  # and read the committed data afterwards
            time.sleep(0.05)
    assert locks.polls > 5
    assert locks.hits == [], f"exclusive locks / waiting readers on live tables: {sorted(set(locks.hits))}"
    bad = sorted({(r, s) for r, s, _ in readers.seen if s != 200})
    assert bad == [], f"non-200 answers during the reload: {bad}"
    return readers, locks


def _held_open(url: str, load: Callable[[psycopg.Connection], object], hold_s: float = 1.5) -> Callable[[], None]:
    """Run a loader on its own connection and keep its transaction open ``hold_s`` before commit
    (a slow load: every lock it took is held meanwhile)."""

    def run() -> None:
        with psycopg.connect(url) as conn:
            load(conn)
            time.sleep(hold_s)
            conn.commit()

    return run


def test_buildings_reload_while_serving(server, reload_db: str, tiny_delivery: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from gis.loaders.io import Mapping
    from gis.loaders.reference import load_buildings

    url = libpq(reload_db)
    clean = tiny_delivery / "clean"
    with psycopg.connect(url) as conn:
        unreferenced = [r[0] for r in conn.execute(
            "SELECT id FROM buildings b WHERE NOT EXISTS (SELECT 1 FROM restricted.persons p"
            " WHERE p.building_id = b.id) ORDER BY id LIMIT 2")]
    assert len(unreferenced) == 2
    gdf = gpd.read_file(clean / "buildings.gpkg")
    new_path = tmp_path / "buildings.gpkg"
    gdf[~gdf["id"].isin(unreferenced)].to_file(new_path, driver="GPKG")
    old = _count(url, "buildings")

    readers, _ = _reload_under_reads(server, url, _held_open(
        url, lambda c: load_buildings(c, new_path, Mapping(), boundary=clean / "boundary.gpkg")))
    new = _count(url, "buildings")
    assert new == old - 2
    assert readers.counts("buildings") == {old, new}  # the old set until commit, then the new one


def test_population_reload_while_serving(server, reload_db: str, tiny_delivery: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from gis.loaders.io import Mapping
    from gis.loaders.population import load_population

    url = libpq(reload_db)
    pop = pd.read_csv(tiny_delivery / "clean" / "population.csv", dtype=str, keep_default_na=False)
    new_path = tmp_path / "population.csv"
    pop.iloc[: len(pop) // 2].to_csv(new_path, index=False)
    old = _count(url, "restricted.persons")

    _reload_under_reads(server, url, _held_open(url, lambda c: load_population(c, new_path, Mapping())))
    assert 0 < _count(url, "restricted.persons") < old


def test_events_reload_while_serving(server, reload_db: str, tmp_path: Path) -> None:  # noqa: ANN001
    from gis.loaders import load_layer

    url = libpq(reload_db)
    big = write_events_csv(tmp_path / "events.csv", N_BIG)
    old = _count(url, "events")
    assert old < N_BIG

    def reload() -> None:
        report = load_layer("events", big, url=url)
        assert report.layers[0].loaded == N_BIG

    readers, _ = _reload_under_reads(server, url, reload)
    assert _count(url, "events") == N_BIG
    assert readers.counts("events") == {old, N_BIG}
    with psycopg.connect(url) as conn:  # the history is the new events' (one row per reached step at least)
        orphans = conn.execute("SELECT count(*) FROM event_status_history h WHERE NOT EXISTS "
                               "(SELECT 1 FROM events e WHERE e.id = h.event_id)").fetchone()[0]
        assert orphans == 0
        assert conn.execute("SELECT count(DISTINCT event_id) FROM event_status_history").fetchone()[0] == N_BIG
        state = conn.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'event_status_history_append_only'"
                             ).fetchone()
        assert state == ("O",)  # the append-only guard is on again


class GpsReaders(Readers):
    """Readers of the GPS data: fixes per day (mileage), a track, the nearest patrollers."""

    DAY = gis_world.DAY.date().isoformat()
    ROUTES = {
        "mileage": f"/analytics/patrol/mileage?day={DAY}",
        "track": f"/analytics/patrol/track?worker_id=W001&start={DAY}T00:00:00Z&end={DAY}T06:00:00Z",
        "nearest": "/analytics/patrollers/nearest?lon=117.39&lat=32.93&by=straight&n=5",
    }

    def count_of(self, path: str, r: httpx.Response) -> int | None:
        return sum(row["fixes"] for row in r.json()) if "mileage" in path else None


def write_gps_parquet(path: Path, every_s: int = 30) -> pd.DataFrame:
    """The tiny district's three devices, a fix every ``every_s`` s from 1 February to the end of
    DAY (two months: 2026-02 and 2026-03), walking inside the district."""
    rng = np.random.default_rng(3)
    day = gis_world.DAY.replace(tzinfo=None)  # naive UTC, as the delivery contract says
    t = pd.date_range(day - timedelta(days=29), day + timedelta(days=1), freq=f"{every_s}s", inclusive="left")
    frames = []
    for dev, worker in (("D001", "W001"), ("D002", "W002"), ("D003", "W003")):
        x = 200 + np.cumsum(rng.normal(0, 1, len(t))).clip(-150, 150)
        y = 200 + np.cumsum(rng.normal(0, 1, len(t))).clip(-150, 150)
        lon, lat = gis_world.TO_LONLAT.transform(gis_world.X0 + x, gis_world.Y0 + y)
        frames.append(pd.DataFrame({"device_id": dev, "worker_id": worker, "t": t, "lon": lon, "lat": lat,
                                    "speed": 1.0, "accuracy": 5.0}))
    df = pd.concat(frames, ignore_index=True)
    df.to_parquet(path, index=False)
    return df


def test_gps_replace_while_serving(server, reload_db: str, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """``load gps --replace``: the new months load into detached tables while readers get the old
    fixes; ACCESS EXCLUSIVE on gps_fixes appears only in the final swap (after everything was
    loaded and indexed) and never long enough to time a reader out (all 200 at 2 s)."""
    from gis.loaders import gps_replace, load_layer

    url = libpq(reload_db)
    new = write_gps_parquet(tmp_path / "gps.parquet")
    local_day = new["t"].dt.tz_localize("UTC").dt.tz_convert("Asia/Shanghai").dt.date.astype(str)
    new_on_day = int((local_day == GpsReaders.DAY).sum())
    with psycopg.connect(url) as conn:
        old_on_day = conn.execute(
            "SELECT count(*) FROM gps_fixes WHERE (t AT TIME ZONE 'Asia/Shanghai')::date = %s::date",
            (GpsReaders.DAY,)).fetchone()[0]
    assert 0 < old_on_day < new_on_day

    swap_started: list[float] = []
    real_swap = gps_replace.ReplacementMonths.swap

    def timed_swap(self) -> float:  # noqa: ANN001
        swap_started.append(time.monotonic())
        return real_swap(self)

    monkeypatch.setattr(gps_replace.ReplacementMonths, "swap", timed_swap)
    base, headers = server
    watched = ["gps_fixes", "gps_fixes_default", "worker_positions"]
    with LockWatch(url, watched) as locks, GpsReaders(base, headers) as readers:
        while len(readers.seen) < 12:
            time.sleep(0.05)
        t_load = time.monotonic()
        report = load_layer("gps", tmp_path / "gps.parquet", url=url, replace=True)
        t_done = time.monotonic()
        n_during = len(readers.seen)
        while len(readers.seen) < n_during + 12:
            time.sleep(0.05)
    assert report.layers[0].loaded == len(new)
    bad = sorted({(r, s) for r, s, _ in readers.seen if s != 200})
    assert bad == [], f"non-200 answers during the gps reload: {bad}"
    assert readers.counts("mileage") == {old_on_day, new_on_day}  # old fixes until commit, then the new ones

    # exclusive locks (and readers waiting) only once the swap began, none while the fixes loaded
    assert locks.polls > 5
    assert len(swap_started) == 1
    early = [h for h in locks.stamped if h[0] < swap_started[0]]
    assert early == [], f"locks before the swap: {sorted({h[1:] for h in early})}"
    exclusive = [h[0] for h in locks.stamped if h[1] == "gps_fixes" and h[2] == "AccessExclusiveLock"]
    held = (max(exclusive) - min(exclusive)) if exclusive else 0.0
    print(f"gps --replace of {len(new)} fixes: {t_done - t_load:.1f} s, loading without exclusive locks for "
          f"{swap_started[0] - t_load:.1f} s; ACCESS EXCLUSIVE on gps_fixes seen for {held:.3f} s "
          f"({len(exclusive)} of {locks.polls} polls); {report.layers[0].notes}")
    assert held < 2.0  # the readers' statement timeout: they were not held up (all 200 above)
    assert not any(h[1] == "worker_positions" and h[2] == "AccessExclusiveLock" for h in locks.stamped)

    with psycopg.connect(url) as conn:  # the partitions are the new months, named and indexed as usual
        children = {r[0]: r[1] for r in conn.execute(
            """SELECT c.relname, (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid)
                 FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
                WHERE h.inhparent = 'gps_fixes'::regclass""")}
        assert children == {"gps_fixes_default": 4, "gps_fixes_p202602": 4, "gps_fixes_p202603": 4}
        names = {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'gps\\_fixes\\_p%%' AND relname LIKE '%%new%%'")}
        assert names == set()
        assert conn.execute("SELECT count(*) FROM gps_fixes").fetchone()[0] == len(new)
        assert conn.execute("SELECT count(*) FROM gps_fixes_default").fetchone()[0] == 0
        positions = dict(conn.execute("SELECT worker_id, t FROM worker_positions").fetchall())
        assert sorted(positions) == ["W001", "W002", "W003"]
        assert {p.astimezone(UTC).replace(tzinfo=None) for p in positions.values()} == {new["t"].max().to_pydatetime()}
        assert conn.execute("SELECT has_table_privilege('onemap_api', 'gps_fixes', 'SELECT')").fetchone()[0]
    # an appending load of the same file afterwards: every fix is already there
    again = load_layer("gps", tmp_path / "gps.parquet", url=url).layers[0]
    assert again.loaded == 0 and len(again.rejects) == len(new)
