"""The simulated day: devices walk their patrol routes and post their fixes in batches, residents
report events, operators dispatch them (the suggested worker when it is one of ours) and the
workers' devices step them through accept → arrive → resolve; operators verify and close. Some
workers leave their patrol areas for a while (a geofence alarm follows on the server).

Time: fixes carry the real clock (the API refuses future times and evaluates alarms in time
order); ``speed`` compresses the day's rhythm (event rate, dispatch delays, time on scene) and
speeds up walking only up to a plausible pace (so the server's speeding rule stays quiet).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from api.simulate.client import ApiClient
from api.simulate.world import LonLat, Worker, World, densify, distance_m, offset

log = logging.getLogger(__name__)

#: apparent speeds (m/s): below the server's speeding limits (8 on foot, 13.9 by vehicle)
MAX_SPEED_MS = {"grid_worker": 5.0, "vehicle": 11.0}
BASE_SPEED_MS = {"grid_worker": 1.3, "vehicle": 6.0}
#: real seconds spent outside the patrol area (the server raises its alarm after 60 s)
AWAY_REAL_S = 100.0
MAX_BUFFER = 900  # fixes a device keeps while the server is unreachable
PRIORITIES = ("A", "B", "C", "C", "D")


@dataclass
class Tokens:
    operators: list[str]
    #: device id -> its device account's token
    devices: dict[str, str]
    #: a device account with source "resident" (residents' app); None: operators report them
    resident: str | None = None


@dataclass
class SimulationConfig:
    speed: float = 10.0
    upload_every_s: float = 5.0
    fix_every_s: float = 1.0
    events_per_day: float = 150.0
    #: share of workers per simulated hour that leave their patrol area for a while
    leave_per_hour: float = 0.08
    reject_share: float = 0.05
    seed: int = 7
    http_threads: int = 16


@dataclass
class Device:
    worker: Worker
    token: str
    pos: LonLat
    route_i: int = 0
    mode: str = "patrol"  # patrol | to_event | on_scene | away | back
    path: list[LonLat] = field(default_factory=list)
    event_id: str | None = None
    until: float = 0.0  # monotonic deadline of the current mode (on_scene, away)
    buffer: list[dict[str, Any]] = field(default_factory=list)
    uploading: bool = False
    speed_ms: float = 0.0


class Simulation:
    """Run with :meth:`run` until ``stop`` is set (or ``duration_s`` passes)."""

    def __init__(self, client: ApiClient, world: World, tokens: Tokens, config: SimulationConfig | None = None) -> None:
        self.client = client
        self.world = world
        self.tokens = tokens
        self.cfg = config or SimulationConfig()
        self.rnd = random.Random(self.cfg.seed)
        self.devices = [Device(w, tokens.devices[w.device_id], w.position, speed_ms=self._speed(w))
                        for w in world.workers if w.device_id in tokens.devices]
        for d in self.devices:  # start each walk at the route point nearest its last fix
            if d.worker.route:
                d.route_i = min(range(len(d.worker.route)), key=lambda i: distance_m(d.worker.route[i], d.pos))
        self.by_worker = {d.worker.worker_id: d for d in self.devices}
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=self.cfg.http_threads, thread_name_prefix="sim-http")
        self._pending: set[str] = set()  # event ids with an operator call in flight
        self._handled: set[str] = set()  # event ids an operator took up once
        self._screened: set[str] = set()  # event ids an operator decided to reject or not (once each)
        self._reported: dict[str, tuple[LonLat, float]] = {}  # reported by us: where, when (monotonic)
        self._to_close: list[tuple[float, str, str]] = []  # (due monotonic, event id, next status)
        #: operators handle events reported since the simulation started (not the sample's backlog)
        self.started_at = datetime.now(UTC)
        self.counts = {"events": 0, "dispatched": 0, "resolved": 0, "closed": 0, "rejected": 0, "left_area": 0}

    def _speed(self, w: Worker) -> float:
        kind = w.kind if w.kind in BASE_SPEED_MS else "grid_worker"
        return min(BASE_SPEED_MS[kind] * max(1.0, self.cfg.speed), MAX_SPEED_MS[kind])

    def _real(self, sim_s: float) -> float:
        return sim_s / max(self.cfg.speed, 1e-6)

    # ------------------------------------------------------------------------------ movement
    def _step(self, d: Device, dt: float, now: float) -> None:
        budget = d.speed_ms * dt
        if d.mode in ("on_scene",) or (d.mode == "away" and not d.path):
            if now >= d.until:
                if d.mode == "on_scene":
                    self._submit(self._resolve, d)
                else:
                    self._head_back(d)
            return
        while budget > 0:
            if d.path:
                target = d.path[0]
            elif d.mode == "patrol" and d.worker.route:
                d.route_i = (d.route_i + 1) % len(d.worker.route)
                target = d.worker.route[d.route_i]
            else:
                break
            gap = distance_m(d.pos, target)
            if gap <= budget:
                d.pos = target
                budget -= gap
                if d.path:
                    d.path.pop(0)
                    if not d.path:
                        self._arrived(d, now)
                        break
            else:
                f = budget / gap
                d.pos = (d.pos[0] + (target[0] - d.pos[0]) * f, d.pos[1] + (target[1] - d.pos[1]) * f)
                budget = 0

    def _arrived(self, d: Device, now: float) -> None:
        if d.mode == "to_event":
            self._submit(self._worker_step, d, "arrive")
            d.mode = "on_scene"
            d.until = now + self._real(self.rnd.uniform(600, 1800))
        elif d.mode == "away":
            d.until = now + AWAY_REAL_S
        elif d.mode == "back":
            d.mode = "patrol"

    def _head_back(self, d: Device) -> None:
        route = d.worker.route
        if route:
            d.route_i = min(range(0, len(route), 5), key=lambda i: distance_m(route[i], d.pos))
            d.path = densify([d.pos, route[d.route_i]])
            d.mode = "back"
        else:
            d.mode = "patrol"

    def _maybe_leave(self, d: Device, dt: float) -> None:
        p = self.cfg.leave_per_hour * self._sim(dt) / 3600
        if d.mode != "patrol" or not d.worker.area or self.rnd.random() >= p:
            return
        xs = [x for x, _ in d.worker.area]
        ys = [y for _, y in d.worker.area]
        east = (max(xs), (min(ys) + max(ys)) / 2)
        d.path = densify([d.pos, offset(east, 150.0, 0.0)])
        d.mode = "away"
        d.until = float("inf")
        with self._lock:
            self.counts["left_area"] += 1
        log.info("%s leaves patrol area", d.worker.worker_id)

    def _sim(self, real_s: float) -> float:
        return real_s * self.cfg.speed

    # ------------------------------------------------------------------------------ HTTP work
    def _submit(self, fn: Any, *args: Any) -> None:
        try:
            self._pool.submit(self._guard, fn, *args)
        except RuntimeError:  # shutting down
            pass

    @staticmethod
    def _guard(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - one failed call must not end the day
            log.exception("simulation call failed")

    def _upload(self, d: Device) -> None:
        with self._lock:
            batch, d.buffer = d.buffer, []
        if not batch:
            d.uploading = False
            return
        r = self.client.call("POST", "/gps/fixes", "POST /gps/fixes", d.token, json=batch)
        with self._lock:
            d.uploading = False
            if r is None or r.status_code >= 500 or r.status_code == 429:
                d.buffer = (batch + d.buffer)[-MAX_BUFFER:]  # keep them: sent again next time
                return
        if r.status_code == 202:
            rejected = {x.get("index") for x in r.json().get("rejected", [])}
            self.client.stats.ack_fixes([(f["device_id"], f["t"]) for i, f in enumerate(batch) if i not in rejected])

    def _report(self) -> None:
        p = self.world.random_point(self.rnd)
        body = {"category": self.rnd.choice(self.world.categories), "priority": self.rnd.choice(PRIORITIES),
                "description": "居民上报（模拟）", "lon": p[0], "lat": p[1]}
        token = self.tokens.resident or self.tokens.operators[0]
        if not self.tokens.resident:
            body["source"] = "resident"
        r = self.client.call("POST", "/events", "POST /events", token, json=body)
        if r is not None and r.status_code == 201:
            eid = r.json()["id"]
            self.client.stats.ack_event(eid)
            with self._lock:
                self.counts["events"] += 1
                self._reported[eid] = (p, time.monotonic())

    def _free_ours(self) -> list[Device]:
        return [d for d in self.devices if d.mode in ("patrol", "back") and d.event_id is None]

    def _dispatch(self, op: str, event: dict[str, Any]) -> None:
        eid = event["id"]
        try:
            with self._lock:  # an event waiting for a free worker comes back: judged only the first time
                first = eid not in self._screened
                self._screened.add(eid)
            if first and self.rnd.random() < self.cfg.reject_share:
                r = self.client.call("PATCH", f"/events/{eid}", "PATCH /events/{id}", op,
                                     json={"status": "rejected", "note": "重复上报（模拟）"})
                if r is not None and r.status_code == 200:
                    self.client.stats.ack_status(eid, "rejected")
                    with self._lock:
                        self.counts["rejected"] += 1
                return
            sug = self.client.json("GET", f"/events/{eid}/dispatch/suggestions",
                                   "GET /events/{id}/dispatch/suggestions", op, params={"n": 5}) or {}
            with self._lock:
                free = {d.worker.worker_id for d in self._free_ours()}
            chosen = next((s["worker_id"] for s in sug.get("suggestions", []) if s["worker_id"] in free), None)
            if chosen is None and free:
                at = (event["lon"], event["lat"]) if "lon" in event else self.world.center
                chosen = min(free, key=lambda w: distance_m(self.by_worker[w].pos, at))
            if chosen is None:  # nobody of ours is free: try again on a later round
                with self._lock:
                    self._handled.discard(eid)
                    self._reported[eid] = ((float(event["lon"]), float(event["lat"])), time.monotonic())
                return
            with self._lock:
                d = self.by_worker[chosen]
                if d.event_id is not None or d.mode not in ("patrol", "back"):
                    return
                d.event_id = eid
            r = self.client.call("POST", f"/events/{eid}/dispatch", "POST /events/{id}/dispatch", op,
                                 json={"worker_id": chosen, "note": "调度（模拟）"})
            if r is None or r.status_code != 200:
                with self._lock:
                    d.event_id = None
                return
            out = r.json()
            self.client.stats.ack_status(eid, "dispatched")
            route = [(float(x), float(y)) for x, y, *_ in (out.get("route") or {}).get("coordinates", [])]
            target = (float(event["lon"]), float(event["lat"])) if "lon" in event else None
            path = densify([d.pos, *route, *([target] if target else [])])
            with self._lock:
                self.counts["dispatched"] += 1
            time.sleep(min(5.0, self._real(30)))  # the worker reads the order
            r = self.client.call("POST", f"/events/{eid}/accept", "POST /events/{id}/{step}", d.token)
            with self._lock:
                if r is not None and r.status_code == 200:
                    self.client.stats.ack_status(eid, "en_route")
                    d.path = path
                    d.mode = "to_event"
                else:
                    d.event_id = None
        finally:
            with self._lock:
                self._pending.discard(eid)

    def _worker_step(self, d: Device, step: str) -> None:
        eid = d.event_id
        if eid is None:
            return
        r = self.client.call("POST", f"/events/{eid}/{step}", "POST /events/{id}/{step}", d.token)
        if r is not None and r.status_code == 200:
            self.client.stats.ack_status(eid, r.json().get("status", step))

    def _resolve(self, d: Device) -> None:
        with self._lock:
            if d.mode != "on_scene":
                return
            d.mode = "resolving"
        eid = d.event_id
        self._worker_step(d, "resolve")
        with self._lock:
            d.event_id = None
            self.counts["resolved"] += 1
            self._to_close.append((time.monotonic() + self._real(self.rnd.uniform(300, 900)), eid, "verified"))
            self._head_back(d)

    def _close_step(self, op: str, eid: str, status: str) -> None:
        r = self.client.call("PATCH", f"/events/{eid}", "PATCH /events/{id}", op, json={"status": status})
        if r is not None and r.status_code == 200:
            self.client.stats.ack_status(eid, status)
            with self._lock:
                if status == "verified":
                    self._to_close.append((time.monotonic() + self._real(120), eid, "closed"))
                else:
                    self.counts["closed"] += 1

    def _operate(self, k: int, op: str, now: float) -> None:
        """Operator k: looks at the queue, dispatches its share of the events reported since the
        simulation started (those it saw reported, and newer queue rows), verifies and closes."""
        rows = self.client.json("GET", "/dispatch/queue", "GET /dispatch/queue", op,
                                params={"status": "reported", "limit": 100}) or []
        delay = self._real(120)
        fresh = {r["id"]: r for r in rows if isinstance(r, dict) and r.get("id") and r.get("reported_at")
                 and datetime.fromisoformat(r["reported_at"]) >= self.started_at}
        with self._lock:
            for eid, (lonlat, at) in list(self._reported.items()):
                if now - at >= delay:
                    fresh.setdefault(eid, {"id": eid, "lon": lonlat[0], "lat": lonlat[1]})
                    del self._reported[eid]
        for eid, ev in fresh.items():
            if hash(eid) % len(self.tokens.operators) != k:
                continue
            with self._lock:
                if eid in self._pending or eid in self._handled:
                    continue
                self._pending.add(eid)
                self._handled.add(eid)
            self._submit(self._dispatch, op, ev)
        with self._lock:
            due = [x for x in self._to_close if x[0] <= now]
            self._to_close = [x for x in self._to_close if x[0] > now]
        for _at, eid, status in due:
            self._submit(self._close_step, op, eid, status)

    # ------------------------------------------------------------------------------ loop
    def run(self, stop: threading.Event, duration_s: float | None = None, on_tick: Any = None) -> None:
        """Tick every ``fix_every_s`` until ``stop`` is set or ``duration_s`` passed; then the
        buffered fixes are sent once more and the HTTP threads finish their calls."""
        cfg = self.cfg
        t0 = last = time.monotonic()
        next_upload = {id(d): t0 + (i % max(1, int(cfg.upload_every_s * 10))) / 10 for i, d in enumerate(self.devices)}
        next_ops = t0 + 1.0
        log.info("simulating %d devices at speed %g", len(self.devices), cfg.speed)
        try:
            while not stop.is_set() and (duration_s is None or time.monotonic() - t0 < duration_s):
                now = time.monotonic()
                dt, last = now - last, now
                stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
                for d in self.devices:
                    with self._lock:
                        self._maybe_leave(d, dt)
                        self._step(d, dt, now)
                        moving = bool(d.path) or d.mode == "patrol"
                        d.buffer.append({"device_id": d.worker.device_id, "t": stamp, "lon": round(d.pos[0], 7),
                                         "lat": round(d.pos[1], 7), "speed": round(d.speed_ms if moving else 0.0, 2),
                                         "accuracy": 5.0})
                        due = now >= next_upload[id(d)] and not d.uploading
                        if due:
                            d.uploading = True
                            next_upload[id(d)] = now + cfg.upload_every_s
                    if due:
                        self._submit(self._upload, d)
                if self.rnd.random() < cfg.events_per_day * self._sim(dt) / 86400:
                    self._submit(self._report)
                if now >= next_ops:
                    next_ops = now + 2.0
                    for k, op in enumerate(self.tokens.operators):
                        self._submit(self._operate, k, op, now)
                if on_tick:
                    on_tick(self)
                stop.wait(max(0.0, cfg.fix_every_s - (time.monotonic() - now)))
        finally:
            for d in self.devices:
                if not d.uploading:
                    self._submit(self._upload, d)
            self._pool.shutdown(wait=True, cancel_futures=False)
            log.info("simulation stopped: %s", self.counts)
