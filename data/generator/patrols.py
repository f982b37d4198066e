"""Patrol movement: per-worker patrol loops on the road graph, and the GPS fixes along them.

Everything bulky is vectorised: GPS tracks are positions along per-worker patrol loops on the
road graph, interpolated for all worker-days at once. Used by :mod:`data.generator.overlays`
(which builds the workers and patrol areas these routes need, and the geofences they cross).
"""

from __future__ import annotations

import numpy as np
import shapely

from .common import EVENTS_END, GPS_DAYS, District

FIX_STEP_S = 10
SHIFT_H = 8


# ------------------------------------------------------------------------------ routing
def _adjacency(g):
    n = len(g.nodes)
    a = np.concatenate([g.u, g.v])
    b = np.concatenate([g.v, g.u])
    e = np.concatenate([np.arange(len(g.u)), np.arange(len(g.u))])
    order = np.argsort(a, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(a, minlength=n))])
    return ptr, b[order], e[order]


def _walk(rng, g, adj, start: int, allowed_edge: np.ndarray, min_len: float, away_from=None, max_steps=4000):
    """Non-backtracking random walk over allowed edges; returns node list and edge list."""
    ptr, nb, ed = adj
    nodes, edges, length = [start], [], 0.0
    prev = -1
    for _ in range(max_steps):
        cur = nodes[-1]
        cand_n, cand_e = nb[ptr[cur] : ptr[cur + 1]], ed[ptr[cur] : ptr[cur + 1]]
        ok = allowed_edge[cand_e]
        cand_n, cand_e = cand_n[ok], cand_e[ok]
        if len(cand_n) == 0:
            break
        if len(cand_n) > 1:
            fwd = cand_e != prev
            cand_n, cand_e = cand_n[fwd], cand_e[fwd]
        if away_from is not None:
            dist = np.hypot(*(g.nodes[cand_n] - away_from).T)
            j = int(np.argmax(dist + rng.uniform(0, 40, len(dist))))
        else:
            j = int(rng.integers(len(cand_n)))
        nodes.append(int(cand_n[j]))
        edges.append(int(cand_e[j]))
        prev = int(cand_e[j])
        length += g.length[prev]
        if length >= min_len:
            break
    return nodes, edges


def _polyline(g, nodes, edges) -> np.ndarray:
    pts = [g.nodes[nodes[0]][None, :]]
    for a, e in zip(nodes[:-1], edges, strict=True):
        c = shapely.get_coordinates(g.segments[e])
        if g.u[e] != a:
            c = c[::-1]
        pts.append(c[1:])
    return np.vstack(pts)


def _there_and_back(poly: np.ndarray) -> np.ndarray:
    return np.vstack([poly, poly[-2::-1]]) if len(poly) > 1 else np.vstack([poly, poly + 1.0])


def cum_length(poly: np.ndarray) -> np.ndarray:
    """Cumulative length (m) at each vertex of a polyline."""
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(poly, axis=0).T))])


def build_routes(rng: np.random.Generator, d: District) -> None:
    g = d.graph
    adj = _adjacency(g)
    mids = shapely.line_interpolate_point(g.segments, 0.5, normalized=True)
    cls = d.roads["class"].to_numpy()[g.road_index]
    bridge = d.roads["bridge"].to_numpy()[g.road_index]
    routes, detours = [], []
    for kind, area in zip(d.workers["kind"], d.extras["patrol_areas"], strict=True):
        zone = area.buffer(25)
        shapely.prepare(zone)
        inside = shapely.contains(zone, mids)
        if kind == "vehicle":
            allowed = inside & np.isin(cls, ["primary", "secondary", "tertiary", "residential"])
            min_len = 30_000.0
        else:
            allowed = inside & ((cls != "service") | (bridge == 0))
            min_len = 8_000.0
        cand_nodes = np.unique(np.concatenate([g.u[allowed], g.v[allowed]]))
        if len(cand_nodes) == 0:
            cand_nodes = np.unique(np.concatenate([g.u, g.v]))
            allowed = np.ones(len(g.u), dtype=bool)
        c = np.array([area.centroid.x, area.centroid.y])
        start = int(cand_nodes[np.argmin(np.hypot(*(g.nodes[cand_nodes] - c).T))])
        nodes, edges = _walk(rng, g, adj, start, allowed, min_len)
        poly = _polyline(g, nodes, edges)
        route = _there_and_back(poly)
        routes.append(route)
        if kind == "grid_worker":
            m = len(nodes) // 2
            dn, de = _walk(rng, g, adj, nodes[m], np.ones(len(g.u), dtype=bool), 350.0, away_from=c)
            out = _polyline(g, dn, de)
            det = np.vstack(
                [
                    _polyline(g, nodes[: m + 1], edges[:m]),
                    out[1:],
                    out[-2::-1],
                    _polyline(g, nodes[m:], edges[m:])[1:],
                ]
            )
            det = _there_and_back(det)
            detours.append((det, float(cum_length(_polyline(g, nodes[: m + 1], edges[:m]))[-1])))
        else:
            detours.append(None)
    d.extras["routes"] = routes
    d.extras["detours"] = detours


# ------------------------------------------------------------------------------ GPS
def build_gps(rng: np.random.Generator, d: District) -> None:
    """xy_4548 of every fix (lon/lat are computed when writing, per district copy)."""
    w = d.workers
    nw = len(w)
    per_day = SHIFT_H * 3600 // FIX_STEP_S
    nd = GPS_DAYS
    rows = nw * nd
    is_veh = (w["kind"] == "vehicle").to_numpy()
    # moving / stopped runs (in fixes): alternate, starting with moving
    runs = 80
    mov = rng.geometric(1 / np.where(np.repeat(is_veh, nd), 30, 60)[:, None], (rows, runs))
    stp = np.minimum(rng.geometric(1 / 18, (rows, runs)), 50)  # < 9 min: ordinary stops are short
    dur = np.stack([mov, stp], axis=2).reshape(rows, 2 * runs)
    bounds = np.cumsum(dur, axis=1)
    i = np.arange(per_day)
    big = per_day * 4 * runs
    flat_b = (bounds + np.arange(rows)[:, None] * big).ravel()
    q = (i[None, :] + np.arange(rows)[:, None] * big).ravel()
    k = np.searchsorted(flat_b, q, side="right") - np.repeat(np.arange(rows) * 2 * runs, per_day)
    moving = (k % 2 == 0).reshape(rows, per_day)
    base_speed = np.where(is_veh, rng.uniform(5.0, 8.5, nw), rng.uniform(1.0, 1.4, nw)).astype(np.float32)
    speed = rng.standard_normal((rows, per_day), dtype=np.float32)
    speed *= 0.12
    speed += 1
    speed *= np.repeat(base_speed, nd)[:, None]
    np.clip(speed, 0.3, None, out=speed)
    speed[~moving] = 0
    del moving
    s = np.cumsum(speed, axis=1, dtype=np.float64)
    s -= speed
    s *= FIX_STEP_S
    # worker-days using the detour (excursion out of the patrol area), vehicle-days parking too long
    routes = d.extras["routes"]
    detours = d.extras["detours"]
    route_len = np.array([cum_length(r)[-1] for r in routes])
    det_len = np.array([cum_length(x[0])[-1] if x is not None else 1.0 for x in detours])
    excursion = (rng.random(rows) < 0.05) & ~np.repeat(is_veh, nd)
    park = (rng.random(rows) < 0.25) & np.repeat(is_veh, nd)
    s0 = rng.uniform(0, 1, rows) * np.repeat(route_len, nd)
    det_start = np.array([x[1] if x is not None else 0.0 for x in detours])
    # start the excursion ~1-3 h into the shift
    walked_1h = np.repeat(base_speed, nd) * 3600 * 0.6
    s0 = np.where(excursion, np.repeat(det_start, nd) - walked_1h * rng.uniform(1, 3, rows), s0)
    s += s0[:, None]
    loop = np.where(excursion, np.repeat(det_len, nd), np.repeat(route_len, nd))
    np.mod(s, loop[:, None], out=s)
    # illegal parking: freeze the vehicle 12-25 min where its loop crosses a no-parking zone
    gf = d.extras["gf_on_route"]
    for r in np.flatnonzero(park):
        wi = r // nd
        target = gf[wi][int(rng.integers(len(gf[wi])))]
        raw = s[r]
        hit = np.flatnonzero((raw[:-1] <= target) & (raw[1:] > target))
        m = int(rng.integers(72, 150))
        if len(hit) == 0 or int(hit[0]) + 1 + m >= per_day:
            continue
        j = int(hit[0]) + 1
        s[r] = np.concatenate([raw[:j], np.full(m, target), raw[j : per_day - m]])
        speed[r] = np.concatenate([speed[r][:j], np.zeros(m, np.float32), speed[r][j : per_day - m]])
    x = np.empty((rows, per_day))
    y = np.empty((rows, per_day))
    for wi in range(nw):
        rr = np.arange(wi * nd, (wi + 1) * nd)
        ex = excursion[rr]
        for rows_k, poly in ((rr[~ex], routes[wi]), (rr[ex], detours[wi][0] if detours[wi] else None)):
            if len(rows_k) == 0 or poly is None:
                continue
            cum = cum_length(poly)
            x[rows_k] = np.interp(s[rows_k], cum, poly[:, 0])
            y[rows_k] = np.interp(s[rows_k], cum, poly[:, 1])
    del s
    acc = rng.uniform(3.0, 8.0, (rows, per_day)).astype(np.float32)
    x += rng.standard_normal((rows, per_day), dtype=np.float32) * (acc / 2)
    y += rng.standard_normal((rows, per_day), dtype=np.float32) * (acc / 2)
    # a few spikes (multipath): 150-600 m off for one fix
    n_spike = int(rng.binomial(x.size, 2e-4))
    k = rng.choice(x.size, n_spike, replace=False)
    ang = rng.uniform(0, 2 * np.pi, n_spike)
    dist = rng.uniform(150, 600, n_spike)
    x.ravel()[k] += np.cos(ang) * dist
    y.ravel()[k] += np.sin(ang) * dist
    noise = rng.standard_normal((rows, per_day), dtype=np.float32) * np.float32(0.1)
    noise *= speed > 0
    speed += noise
    np.clip(speed, 0, None, out=speed)
    rep_speed = np.round(speed, 2)
    day0 = (EVENTS_END - np.timedelta64(GPS_DAYS, "D")).astype("datetime64[ms]")
    # shift 08:00-16:00 local = 00:00-08:00 UTC of the same date
    t_day = day0 + (np.arange(nd) * 86400_000).astype("timedelta64[ms]")
    t = np.tile(t_day, nw)[:, None] + (i * FIX_STEP_S * 1000).astype("timedelta64[ms]")[None, :]
    d.extras["gps"] = {
        "worker_index": np.repeat(np.arange(nw), nd * per_day).astype(np.int32),
        "t": t.ravel(),
        "x": x.ravel(),
        "y": y.ravel(),
        "speed": rep_speed.ravel(),
        "accuracy": np.round(acc.ravel(), 1),
    }
    d.extras["gps_truth"] = {"excursion_rows": np.flatnonzero(excursion), "park_rows": np.flatnonzero(park)}
