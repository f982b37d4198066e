"""Community targets (issue 16): a targets file (YAML) evaluated against events and surveys.

A file (``data/targets/jiefang.yaml`` for the sample; setting ``ONEMAP_TARGETS_FILE``)::

    targets:
      - id: security_down_30
        title: 治安案件较基线下降30%
        metric: events.count          # events.count | events.closure_hours | events.on_time_rate
                                      # | survey.satisfaction | access.share (level only, now:
                                      #   kind, minutes 5|10|15, speed 0.8|1.2, residents total|
                                      #   age_80_plus|disabled|low_income; no baseline)
        group: security               # events: a category group (event_category_group) ...
        # categories: [burglary, theft] # ... or categories (neither: every event)
        community: each               # all (the district) | each (every community) | a community id
        baseline: {start: 2025-11-01, end: 2026-02-01}   # local dates, end exclusive
        current: {start: 2026-02-01}  # optional; default baseline end .. as_of (end capped at as_of)
        change: -0.30                 # a relative change against the baseline ...
        # level: 0.90                 # ... or a level (direction: at_least | at_most)
        deadline: 2026-10-31

Evaluation (:func:`evaluate`): the metric over the baseline and the current window per community
(and/or the district), a monthly series from the baseline start to ``as_of``. Counts are compared
per day (windows of different lengths), so ``achieved = (n_cur / days_cur) / (n_base / days_base) - 1``;
other metrics compare values: ``achieved = v_cur / v_base - 1``. Status of a change target:
``met`` (achieved reaches ``change``), ``on_track`` (achieved reaches the pro-rata share of
``change``: change x elapsed / (deadline - current start)), ``off_track``, ``missed`` (deadline
passed, not met) or ``no_data`` (no baseline). A level target: ``met`` when the current value is
at least (at most) the level, else ``off_track`` (``missed`` after the deadline).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import Connection

from core.errors import InputError
from gis.sqlfiles import sql

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
METRICS = ("events.count", "events.closure_hours", "events.on_time_rate", "survey.satisfaction", "access.share")
STATUSES = ("met", "on_track", "off_track", "missed", "no_data")


@dataclass(frozen=True)
class Target:
    id: str
    metric: str
    community: str
    baseline: tuple[date, date]
    deadline: date
    title: str = ""
    group: str | None = None
    categories: tuple[str, ...] | None = None
    topic: str | None = None
    current: tuple[date | None, date | None] = (None, None)
    change: float | None = None
    level: float | None = None
    direction: str = "at_least"
    kind: str | None = None  # access.share: the facility kind, minutes, walking speed and population group
    minutes: int = 15
    speed: float = 1.2
    residents: str = "total"


def _date(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise InputError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from exc


def _window(raw: Any, where: str, required: bool) -> tuple[date | None, date | None]:
    if raw is None and not required:
        return (None, None)
    if not isinstance(raw, dict) or (required and not {"start", "end"} <= set(raw)):
        raise InputError(f"{where}: give {{start: YYYY-MM-DD, end: YYYY-MM-DD}}")
    start = _date(raw["start"], f"{where}.start") if raw.get("start") is not None else None
    end = _date(raw["end"], f"{where}.end") if raw.get("end") is not None else None
    if start and end and start >= end:
        raise InputError(f"{where}: start {start} is not before end {end}")
    return (start, end)


def parse_target(raw: Any, where: str) -> Target:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a target is a mapping")
    tid = str(raw.get("id") or "").strip()
    if not tid:
        raise InputError(f"{where}: field 'id' is missing")
    where = f"{where} (id {tid})"
    metric = raw.get("metric")
    if metric not in METRICS:
        raise InputError(f"{where}: field 'metric' {metric!r} is not one of {', '.join(METRICS)}")
    if (raw.get("change") is None) == (raw.get("level") is None):
        raise InputError(f"{where}: give exactly one of 'change' (relative, e.g. -0.3) or 'level'")
    for key in ("change", "level"):
        if raw.get(key) is not None and not isinstance(raw[key], int | float):
            raise InputError(f"{where}: field {key!r} must be a number")
    direction = raw.get("direction") or ("at_most" if metric in ("events.count", "events.closure_hours")
                                         else "at_least")
    if direction not in ("at_least", "at_most"):
        raise InputError(f"{where}: field 'direction' must be at_least or at_most")
    cats = raw.get("categories")
    if cats is not None and (not isinstance(cats, list) or not all(isinstance(c, str) for c in cats)):
        raise InputError(f"{where}: field 'categories' must be a list of category codes")
    if raw.get("deadline") is None:
        raise InputError(f"{where}: field 'deadline' is missing")
    access_fields: dict[str, Any] = {}
    if metric == "access.share":
        access_fields = _access_fields(raw, where)
        baseline = _window(raw.get("baseline") or {"start": "1970-01-01", "end": "1970-01-02"},
                           f"{where}: baseline", required=True)
    else:
        baseline = _window(raw.get("baseline"), f"{where}: baseline", required=True)
    return Target(
        id=tid, metric=metric, community=str(raw.get("community") or "all"),
        baseline=(baseline[0], baseline[1]),  # type: ignore[arg-type]
        deadline=_date(raw["deadline"], f"{where}: deadline"), title=str(raw.get("title") or ""),
        group=raw.get("group"), categories=tuple(cats) if cats is not None else None, topic=raw.get("topic"),
        current=_window(raw.get("current"), f"{where}: current", required=False),
        change=None if raw.get("change") is None else float(raw["change"]),
        level=None if raw.get("level") is None else float(raw["level"]), direction=direction, **access_fields,
    )


def _access_fields(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """access.share: the share of a community's residents (or of its 80+, disabled, low-income)
    within ``minutes`` walk of a facility ``kind`` (gis.access), now: a level target only."""
    from gis import access

    if raw.get("level") is None:
        raise InputError(f"{where}: metric access.share takes a 'level' (a share, e.g. 0.9), not a 'change'")
    kind, minutes = raw.get("kind"), raw.get("minutes", 15)
    speed, residents = raw.get("speed", access.DEFAULT_SPEED), raw.get("residents", "total")
    if kind not in access.KINDS:
        raise InputError(f"{where}: field 'kind' {kind!r} is not one of {', '.join(access.KINDS)}")
    if minutes not in access.MINUTES:
        raise InputError(f"{where}: field 'minutes' {minutes!r} is not one of {', '.join(map(str, access.MINUTES))}")
    if speed not in access.SPEEDS:
        raise InputError(f"{where}: field 'speed' {speed!r} is not one of {', '.join(map(str, access.SPEEDS))}")
    if residents not in access.GROUPS:
        raise InputError(f"{where}: field 'residents' {residents!r} is not one of {', '.join(access.GROUPS)}")
    return {"kind": kind, "minutes": int(minutes), "speed": float(speed), "residents": residents}


def measure_access(conn: Connection, t: Target) -> dict[str | None, float | None]:
    """access.share now: community id (None: the district, over the published counts) -> share."""
    from gis import access

    rows = [r for r in access.community_access(conn, t.kind or "", t.speed) if r["grp"] == t.residents]
    out: dict[str | None, float | None] = {r["community_id"]: r[f"share_{t.minutes}"] for r in rows}
    pub = [r for r in rows if r[f"within_{t.minutes}"] is not None and r["residents"]]
    total = sum(r["residents"] for r in pub)
    out[None] = sum(r[f"within_{t.minutes}"] for r in pub) / total if total else None
    return out


def load_targets(path: Path | str) -> list[Target]:
    """The targets of a YAML file; InputError naming the file, the target and the field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"targets file {path} does not exist", hint="setting ONEMAP_TARGETS_FILE")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from exc
    items = doc.get("targets") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a mapping with a list 'targets'")
    out = [parse_target(t, f"{path}: targets[{i}]") for i, t in enumerate(items)]
    ids = [t.id for t in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"{path}: duplicate target id(s) {', '.join(dup)}")
    return out


# --- measuring ---------------------------------------------------------------------------------------
def _local(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=LOCAL_TZ)


def _categories(conn: Connection, t: Target) -> list[str] | None:
    if t.categories is not None:
        return list(t.categories)
    if t.group is None:
        return None
    cats = [r[0] for r in conn.execute(sql("targets/group_categories"), {"group": t.group})]
    if not cats:
        raise InputError(f"target {t.id}: unknown category group {t.group!r} (table event_category_group)")
    return cats


def measure(conn: Connection, t: Target, d0: date, d1: date, cats: list[str] | None) -> dict[str | None, float | None]:
    """The metric over local days [d0, d1): community id (None: the district) -> value."""
    if t.metric == "survey.satisfaction":
        rows = conn.execute(sql("targets/surveys"), {"d0": d0, "d1": d1, "topic": t.topic}).mappings()
        return {None if r["is_total"] else r["community_id"]: r["satisfaction"] for r in rows}
    rows = conn.execute(sql("targets/events"), {"t0": _local(d0), "t1": _local(d1), "categories": cats}).mappings()
    key = {"events.count": "n", "events.closure_hours": "closure_hours",
           "events.on_time_rate": "on_time_rate"}[t.metric]
    out: dict[str | None, float | None] = {}
    for r in rows:
        if not r["is_total"] and r["community_id"] is None:
            continue  # events outside every community count for the district only
        v = r[key]
        out[None if r["is_total"] else r["community_id"]] = None if v is None else float(v)
    return out


def _months(d0: date, d1: date) -> list[tuple[date, date]]:
    out, m = [], date(d0.year, d0.month, 1)
    while m < d1:
        nxt = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
        out.append((max(m, d0), min(nxt, d1)))
        m = nxt
    return out


def status(t: Target, base: float | None, cur: float | None, base_days: int, cur_days: int,
           fraction: float, past_deadline: bool) -> dict[str, Any]:
    """Achieved change, the pro-rata expectation and the status of one target in one place."""
    out: dict[str, Any] = {"achieved_change": None, "expected_change": None}
    if t.level is not None:
        if cur is None:
            return out | {"status": "no_data", "on_track": None}
        met = cur >= t.level if t.direction == "at_least" else cur <= t.level
        st = "met" if met else ("missed" if past_deadline else "off_track")
        return out | {"status": st, "on_track": met}
    assert t.change is not None
    if cur is None or not base:
        return out | {"status": "no_data", "on_track": None}
    if t.metric == "events.count":
        achieved = (cur / cur_days) / (base / base_days) - 1
    else:
        achieved = cur / base - 1
    expected = t.change * fraction
    better = (lambda a, b: a <= b + 1e-12) if t.change < 0 else (lambda a, b: a >= b - 1e-12)
    if better(achieved, t.change):
        st = "met"
    elif past_deadline:
        st = "missed"
    elif better(achieved, expected):
        st = "on_track"
    else:
        st = "off_track"
    return {"achieved_change": round(achieved, 6), "expected_change": round(expected, 6), "status": st,
            "on_track": st in ("met", "on_track")}


def _keys(t: Target, names: dict[str, str]) -> list[str | None]:
    if t.community == "all":
        return [None]
    if t.community == "each":
        return list(names)
    if t.community not in names:
        raise InputError(f"target {t.id}: unknown community {t.community!r}")
    return [t.community]


def evaluate_access(conn: Connection, t: Target, as_of: datetime, names: dict[str, str]) -> dict[str, Any]:
    """An access.share target: the share now against its level (no baseline, no series)."""
    now = measure_access(conn, t)
    past = as_of.astimezone(LOCAL_TZ).date() > t.deadline
    results = []
    for k in _keys(t, names):
        row = {"community_id": k, "name": names.get(k) if k else None, "baseline_value": None,
               "current_value": now.get(k), "series": []}
        row |= status(t, None, now.get(k), 1, 1, 1.0, past)
        results.append(row)
    day = as_of.astimezone(LOCAL_TZ).date().isoformat()
    return {
        "id": t.id, "title": t.title, "metric": t.metric, "group": None, "categories": None, "topic": None,
        "community": t.community, "baseline": None, "current": {"start": day, "end": day},
        "access": {"kind": t.kind, "minutes": t.minutes, "speed": t.speed, "residents": t.residents},
        "change": t.change, "level": t.level, "direction": t.direction, "deadline": t.deadline.isoformat(),
        "elapsed_fraction": 1.0, "results": results,
    }


def evaluate_target(conn: Connection, t: Target, as_of: datetime, names: dict[str, str]) -> dict[str, Any]:
    if t.metric == "access.share":
        return evaluate_access(conn, t, as_of, names)
    today = as_of.astimezone(LOCAL_TZ).date() + timedelta(days=1)  # windows end exclusive: as_of's day counts
    cats = _categories(conn, t) if t.metric.startswith("events.") else None
    b0, b1 = t.baseline
    c0 = t.current[0] or b1
    c1 = min(t.current[1] or today, today)
    base = measure(conn, t, b0, b1, cats)
    cur = measure(conn, t, c0, c1, cats) if c0 < c1 else {}
    span = (t.deadline - c0).days
    fraction = 1.0 if span <= 0 else min(max((c1 - c0).days / span, 0.0), 1.0)
    past = as_of.astimezone(LOCAL_TZ).date() > t.deadline
    keys = _keys(t, names)
    months = _months(b0, c1) if c1 > b0 else []
    monthly = [(m0, measure(conn, t, m0, m1, cats)) for m0, m1 in months]
    results = []
    for k in keys:
        b, c = base.get(k), cur.get(k)
        if t.metric == "events.count":  # no events: a count of 0, not missing
            b, c = b or 0.0, (c or 0.0) if c0 < c1 else None
        row = {"community_id": k, "name": names.get(k) if k else None, "baseline_value": b, "current_value": c}
        row |= status(t, b, c, (b1 - b0).days, max((c1 - c0).days, 1), fraction, past)
        row["series"] = [{"month": m0.strftime("%Y-%m"),
                          "value": (vals.get(k) or 0.0) if t.metric == "events.count" else vals.get(k)}
                         for m0, vals in monthly]
        results.append(row)
    return {
        "id": t.id, "title": t.title, "metric": t.metric, "group": t.group,
        "categories": cats, "topic": t.topic, "community": t.community,
        "baseline": {"start": b0.isoformat(), "end": b1.isoformat()},
        "current": {"start": c0.isoformat(), "end": c1.isoformat()},
        "change": t.change, "level": t.level, "direction": t.direction, "deadline": t.deadline.isoformat(),
        "elapsed_fraction": round(fraction, 6), "results": results,
    }


def evaluate(conn: Connection, targets: list[Target], as_of: datetime | None = None) -> dict[str, Any]:
    """Every target evaluated at ``as_of`` (default now) and the per-community summary for the map:
    ``status`` off_track when any of its targets is off track or missed, on_track when all that
    have data are met or on track, no_data otherwise."""
    as_of = as_of or datetime.now(UTC)
    names = {r["community_id"]: r["name"] for r in conn.execute(sql("targets/communities")).mappings()}
    out = [evaluate_target(conn, t, as_of, names) for t in targets]
    summary = []
    for cid, name in names.items():
        sts = [r["status"] for t in out for r in t["results"] if r["community_id"] == cid]
        on = sum(s in ("met", "on_track") for s in sts)
        off = sum(s in ("off_track", "missed") for s in sts)
        summary.append({"community_id": cid, "name": name, "on_track": on, "off_track": off,
                        "status": "off_track" if off else ("on_track" if on else "no_data")})
    return {"as_of": as_of.isoformat(), "targets": out, "communities": summary}
