"""Civil-affairs overlays (issue 16): security incidents with a trend per community, resident
satisfaction surveys and care households with their visit history.

Runs after :mod:`data.generator.overlays` (it needs the communities, grid staff, population and
events) on its own random stream, so nothing else's draws move.

- **Security incidents**: the baseline quarter (2025-11 .. 2026-01) has burglary, theft and
  family-conflict events at a community's own rate; after it the rate is multiplied by the
  community's trend (about half the communities fall by 40-50 %, the others stay near the
  baseline or rise), so the targets in ``data/targets/jiefang.yaml`` give both on- and
  off-track communities. Disputes (already in the events, flat over the year) follow the same
  trend: in falling communities a share of the later disputes is recorded as street order.
- **Surveys** (``surveys.csv``): per community, quarter (2025-10-01 .. 2026-10-01) and topic
  (overall, security, convenience, environment) the respondents and how many were satisfied; a
  community's satisfaction starts between 80 and 93 % and drifts by its own trend.
- **Care households** (``care_households.csv``): pseudonymous ids ``H00001``…, the building, a
  category code (``restricted.care_category``), the visit interval, the assigned grid worker and
  the enrolment date. No person ids, names, ID or phone numbers: a household is a made-up
  number in a residential building.
- **Care visits** (``care_visits.csv``): visits since enrolment (at most since 2026-05-01) up to
  the sample's end 2026-11-01 (local); most households are visited about every interval, about
  one in six falls behind, so some are overdue at the end.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from .common import EVENTS_END, EVENTS_START, District, iso_local

SECURITY_NEW = ["burglary", "theft", "family_conflict"]
SECURITY_P = np.array([0.3, 0.45, 0.25])
BASELINE_END = np.datetime64("2026-02-01T00:00:00")  # targets: baseline 2025-11-01 .. 2026-02-01
DESCRIPTIONS = {
    "burglary": ["入室盗窃报警", "住户门锁被撬", "储藏室被撬"],
    "theft": ["电动车被盗", "自行车被盗", "手机被盗", "电瓶被盗"],
    "family_conflict": ["家庭矛盾求助", "夫妻争吵调解", "赡养纠纷调解"],
}
SURVEY_QUARTERS = ["2025-10-01", "2026-01-01", "2026-04-01", "2026-07-01", "2026-10-01"]
SURVEY_TOPICS = ["overall", "security", "convenience", "environment"]
#: category -> (default visit interval days, share of the households)
CARE = {
    "gaoling": (30, 0.34),
    "dibao": (30, 0.22),
    "canji": (30, 0.16),
    "dujv": (7, 0.14),
    "tekun": (14, 0.08),
    "kunjing_ertong": (14, 0.06),
}
HOUSEHOLDS = 600
VISITS_FROM = np.datetime64("2026-05-01T00:00:00")


def _community_of(d: District, xy: np.ndarray) -> np.ndarray:
    """Community id of each point (nearest community polygon; '' when none)."""
    polys = d.communities.geometry.to_numpy()
    ids = d.communities["id"].to_numpy()
    if not len(xy):
        return np.array([], dtype=object)
    near = shapely.STRtree(polys).query_nearest(shapely.points(xy), all_matches=False)[1]
    return ids[near].astype(object)


def _staff_of(d: District, xy: np.ndarray) -> np.ndarray:
    cells = d.grid_cells
    near = shapely.STRtree(cells.geometry.to_numpy()).query_nearest(shapely.points(xy), all_matches=False)[1]
    return cells["staff_id"].to_numpy()[near]


def community_trends(rng: np.random.Generator, d: District) -> dict[str, float]:
    """Community id -> factor of its security-incident rate after the baseline quarter."""
    ids = list(d.communities["id"])
    falling = set(rng.permutation(len(ids))[: len(ids) // 2].tolist())
    return {c: float(np.round(rng.uniform(0.48, 0.6) if i in falling else rng.uniform(0.9, 1.2), 3))
            for i, c in enumerate(ids)}


def _security_events(rng: np.random.Generator, d: District, trend: dict[str, float]) -> pd.DataFrame:
    b = d.buildings
    homes = np.flatnonzero(np.isin(b["use"].to_numpy(), ["residential", "courtyard_house"]))
    pts = shapely.get_coordinates(shapely.point_on_surface(b.geometry.to_numpy()[homes]))
    comm = b["community"].to_numpy()[homes]
    base_days = int((BASELINE_END - EVENTS_START) / np.timedelta64(1, "D"))
    later_days = int((EVENTS_END - BASELINE_END) / np.timedelta64(1, "D"))
    rows_xy, rows_t, rows_c = [], [], []
    for cid in d.communities["id"]:
        mine = np.flatnonzero(comm == cid)
        if not len(mine):
            continue
        rate = rng.uniform(0.18, 0.4)  # incidents a day in the baseline quarter
        n0 = rng.poisson(rate * base_days)
        n1 = rng.poisson(rate * trend[cid] * later_days)
        day = np.concatenate([rng.uniform(0, base_days, n0), base_days + rng.uniform(0, later_days, n1)])
        pick = mine[rng.integers(0, len(mine), len(day))]
        rows_xy.append(pts[pick] + rng.normal(0, 4, (len(day), 2)))
        rows_t.append(day)
        rows_c.append(rng.choice(SECURITY_NEW, len(day), p=SECURITY_P))
    xy = np.vstack(rows_xy)
    day = np.concatenate(rows_t)
    cat = np.concatenate(rows_c)
    order = np.argsort(day, kind="stable")
    xy, day, cat = xy[order], day[order], cat[order]
    n = len(day)
    hw = np.array([3, 2, 2, 1.5, 1, 1, 1.5, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 5, 6, 6, 5, 4, 3.5])
    hour = rng.choice(24, n, p=hw / hw.sum())
    t_rep = EVENTS_START + (np.floor(day).astype(np.int64) * 86400 + hour * 3600
                            + rng.integers(0, 3600, n)).astype("timedelta64[s]")
    prio = rng.choice(list("ABC"), n, p=[0.15, 0.55, 0.3])
    steps = np.stack([np.maximum(60, rng.lognormal(np.log(mu), 0.7, n)).astype(np.int64)
                      for mu in (10 * 60, 20 * 60, 8 * 3600, 4 * 3600, 3600)], 1)
    stamps = t_rep[:, None] + np.cumsum(steps, axis=1).astype("timedelta64[s]")
    reached = np.cumprod(stamps <= EVENTS_END, axis=1).astype(bool)
    stamps = np.where(reached, stamps, np.datetime64("NaT"))
    names = np.array(["reported", "accepted", "dispatched", "handled", "verified", "closed"], dtype=object)
    pick = rng.random(n)
    start = len(d.events)
    return pd.DataFrame({
        "id": [f"E{start + i + 1:07d}" for i in range(n)],
        "category": cat,
        "priority": prio,
        "source": rng.choice(["resident", "grid_worker", "camera"], n, p=[0.7, 0.2, 0.1]),
        "description": [f"小区{DESCRIPTIONS[c][int(p * len(DESCRIPTIONS[c]))]}"
                        for c, p in zip(cat, pick, strict=True)],
        "x": np.round(xy[:, 0], 2),
        "y": np.round(xy[:, 1], 2),
        "status": names[reached.sum(axis=1)],
        "worker_id": np.where(reached[:, 1], _staff_of(d, xy), ""),
        "reported_at": iso_local(t_rep),
        "accepted_at": iso_local(stamps[:, 0]),
        "dispatched_at": iso_local(stamps[:, 1]),
        "handled_at": iso_local(stamps[:, 2]),
        "verified_at": iso_local(stamps[:, 3]),
        "closed_at": iso_local(stamps[:, 4]),
        "rejected_at": "",
    })


def build_events(rng: np.random.Generator, d: District, trend: dict[str, float]) -> None:
    ev = d.events.copy()
    comm = _community_of(d, ev[["x", "y"]].to_numpy(dtype=float))
    later = ev["reported_at"].str.slice(0, 19).to_numpy(dtype="datetime64[s]") >= BASELINE_END
    factor = np.array([min(trend.get(c, 1.0), 1.0) for c in comm])
    relabel = (ev["category"].to_numpy() == "dispute") & later & (rng.random(len(ev)) >= factor)
    ev.loc[relabel, "category"] = "street_order"
    ev.loc[relabel, "description"] = [s.split("附近")[0] + "附近机动车乱停放" for s in ev.loc[relabel, "description"]]
    d.events = pd.concat([ev, _security_events(rng, d, trend)], ignore_index=True)
    d.events = d.events.sort_values("reported_at", kind="stable").reset_index(drop=True)


def build_surveys(rng: np.random.Generator, d: District, trend: dict[str, float]) -> None:
    rows = []
    for cid in d.communities["id"]:
        p0 = rng.uniform(0.8, 0.93)
        drift = (0.012 if trend[cid] < 0.8 else -0.004) + rng.normal(0, 0.004)
        for q, period in enumerate(SURVEY_QUARTERS):
            for topic in SURVEY_TOPICS:
                n = int(rng.integers(60, 160))
                p = float(np.clip(p0 + drift * q + rng.normal(0, 0.015), 0.5, 0.99))
                rows.append((cid, period, topic, n, int(rng.binomial(n, p))))
    d.extras["surveys"] = pd.DataFrame(rows, columns=["community_id", "period", "topic", "respondents", "satisfied"])


def build_care(rng: np.random.Generator, d: District) -> None:
    b = d.buildings
    homes = np.flatnonzero(np.isin(b["use"].to_numpy(), ["residential", "courtyard_house"]))
    # households where residents live, weighted by them (no person is referenced)
    per = d.population["building_id"].value_counts()
    w = per.reindex(b["id"].to_numpy()[homes]).fillna(0).to_numpy(dtype=float)
    pick = np.sort(rng.choice(homes, HOUSEHOLDS, p=w / w.sum()))
    cats = list(CARE)
    cat = rng.choice(cats, HOUSEHOLDS, p=np.array([CARE[c][1] for c in cats]))
    interval = np.array([CARE[c][0] for c in cat])
    longer = (cat == "gaoling") & (rng.random(HOUSEHOLDS) < 0.2)
    interval = np.where(longer, 60, interval)
    xy = shapely.get_coordinates(shapely.point_on_surface(b.geometry.to_numpy()[pick]))
    enrolled = np.datetime64("2025-03-01") + rng.integers(0, 520, HOUSEHOLDS).astype("timedelta64[D]")
    ids = [f"H{i + 1:05d}" for i in range(HOUSEHOLDS)]
    workers = _staff_of(d, xy)
    d.extras["care_households"] = pd.DataFrame({
        "id": ids,
        "building_id": b["id"].to_numpy()[pick],
        "category": cat,
        "interval_days": interval,
        "worker_id": workers,
        "enrolled_on": np.datetime_as_string(enrolled, unit="D"),
    })
    # visits: every interval (+- a few days) from enrolment or VISITS_FROM; one in six falls behind
    rows = []
    end = EVENTS_END
    behind = rng.random(HOUSEHOLDS) < 1 / 6
    for i in range(HOUSEHOLDS):
        t = max(enrolled[i].astype("datetime64[s]"), VISITS_FROM)
        stop = end - np.timedelta64(int(interval[i] * rng.uniform(2, 4)), "D") if behind[i] else end
        while True:
            step = interval[i] * rng.uniform(0.7, 1.0)
            t = t + np.timedelta64(int(step * 86400), "s")
            if t >= stop:
                break
            hour = int(rng.integers(9, 17))
            at = t.astype("datetime64[D]") + np.timedelta64(hour * 3600 + int(rng.integers(0, 3600)), "s")
            outcome = rng.choice(["visited", "not_home", "refused"], p=[0.9, 0.08, 0.02])
            rows.append((ids[i], workers[i], at, outcome))
    vis = pd.DataFrame(rows, columns=["household_id", "worker_id", "t", "outcome"])
    vis = vis.sort_values(["t", "household_id"], kind="stable").reset_index(drop=True)
    d.extras["care_visits"] = pd.DataFrame({
        "household_id": vis["household_id"],
        "worker_id": vis["worker_id"],
        "visited_at": iso_local(vis["t"].to_numpy(dtype="datetime64[s]")),
        "outcome": vis["outcome"],
    })


def build(rng: np.random.Generator, d: District) -> None:
    trend = community_trends(rng, d)
    d.extras["security_trend"] = trend
    build_events(rng, d, trend)
    build_surveys(rng, d, trend)
    build_care(rng, d)
