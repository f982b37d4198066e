"""What a heavy analytics request will cost, estimated before it runs (docs/security.md).

The unit is one geometry test (a point against a cell, or a cell centre against another), plus
a fixed overhead per event: that is what the density/hotspot SQL spends its time on (~0.33 µs
per unit on 2 cores, so the default budget ``analytics_max_cost`` = 1.5e7 is ~5 s alone).
Inputs are cheap: the planner's estimate of events in the window (``EXPLAIN``, nothing
counted) and the area the grids cover (the grid cells' extent). :func:`check_budget` raises
:class:`core.errors.InputError` naming the parameter to change when the estimate is over budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from core.errors import InputError
from gis.sqlfiles import sql

HEX_AREA = 3 * math.sqrt(3) / 2  # hexagon area / edge²
#: measured (bench/bench_abuse.py, 200 k events, 2 cores): a hexagon density costs ~3.3e-7 s per
#: test with a fixed ~50 tests per event; a square density ~3 tests per event
PER_EVENT = 50.0
SQUARE_EVENT = 3.0


@dataclass(frozen=True)
class Cost:
    events: float
    cells: float
    tests: float
    what: str


def events_in_window(conn: Connection, start: datetime, end: datetime,
                     categories: Sequence[str] | None) -> float:
    plan: Any = conn.execute(sql("cost/events_in_window"),
                             {"start": start, "end": end, "categories": list(categories) if categories else None}
                             ).scalar_one()
    return float(plan[0]["Plan"]["Plan Rows"])


def district(conn: Connection) -> tuple[float, int]:
    """(area m² the cell grids cover, number of grid cells)."""
    row = conn.execute(sql("cost/district_area")).one()
    return float(row.area_m2 or 0.0), int(row.n_grid or 0)


def estimate(conn: Connection, kind: str, cell: str, size_m: float, start: datetime, end: datetime,
             categories: Sequence[str] | None) -> Cost:
    """``kind`` is ``density`` or ``hotspots``; ``cell`` grid/square/hex; ``size_m`` square side or hex edge."""
    n_events = events_in_window(conn, start, end, categories)
    area_m2, n_grid = district(conn)
    if cell == "grid":
        n_cells = float(max(n_grid, 1))
    else:
        n_cells = max(area_m2, 1.0) / (size_m * size_m * (HEX_AREA if cell == "hex" else 1.0))
    # per event: a fixed overhead (window scan, assignment, sort) of ~PER_EVENT tests, plus one
    # test per cell where events are matched against cells (hexagons, grid cells); squares are
    # computed arithmetically (SQUARE_EVENT)
    per_event = SQUARE_EVENT if cell == "square" else n_cells + PER_EVENT
    tests = n_events * per_event
    if kind == "hotspots":  # plus every cell against every cell (neighbours)
        tests += n_cells * n_cells
    days = (end - start).total_seconds() / 86400
    what = (f"{kind} cell={cell}" + ("" if cell == "grid" else f" size={size_m:g} m")
            + f" over {days:.0f} days (~{n_events:.2g} events x ~{n_cells:.2g} cells)")
    return Cost(n_events, n_cells, tests, what)


def check_budget(cost: Cost, budget: float, cell: str) -> None:
    if cost.tests <= budget:
        return
    by_size = cell != "grid" and not cost.what.startswith("density cell=square")
    advice = ("widen size or " if by_size else "") + "narrow start/end or filter by category"
    raise InputError(
        f"request too expensive: {cost.what} is ~{cost.tests:.2g} geometry tests, "
        f"the budget is {budget:.2g}; {advice}",
        field="size" if by_size else "start", hint=advice,
    )
