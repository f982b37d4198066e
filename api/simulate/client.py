"""The simulator's HTTP client: one shared httpx connection pool, per-route latency samples,
error counts and the writes the server acknowledged (2xx), so a run can be checked afterwards.

Route labels are the route templates (``POST /gps/fixes``, ``GET /collections/{id}/items``), not
the concrete paths, so percentiles group sensibly. A 503 is counted apart from errors when it
carries ``Retry-After`` (the API's "database unavailable" answer); its absence is an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

#: statuses that are answers, not failures, for the simulator (a race between two operators, a
#: worker no longer available): counted per route as "conflicts"
EXPECTED_4XX = frozenset({409})


@dataclass
class RouteStats:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    conflicts: int = 0
    unavailable: int = 0  # 503 with Retry-After


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


class Stats:
    """Thread-safe counters. ``take()`` returns the samples since the last ``take()`` (a minute's
    report); the totals and the acknowledged writes accumulate for the whole run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window: dict[str, RouteStats] = defaultdict(RouteStats)
        self.total: dict[str, RouteStats] = defaultdict(RouteStats)
        #: (device_id, t ISO string) of every fix answered 202 and not listed as rejected
        self.acked_fixes: set[tuple[str, str]] = set()
        #: ids of events answered 201
        self.acked_events: set[str] = set()
        #: status changes answered 200: (event id, new status)
        self.acked_status: list[tuple[str, str]] = []
        self.error_samples: list[str] = []
        #: monotonic times of 503 answers and of connection failures (outage windows)
        self.unavailable_at: list[float] = []
        self.failed_at: list[float] = []
        self.ok_at_last: float = 0.0

    def record(self, route: str, ms: float, status: int | None, retry_after: bool, detail: str = "") -> None:
        with self._lock:
            now = time.monotonic()
            for bucket in (self._window[route], self.total[route]):
                if status is not None and status < 400:
                    bucket.latencies_ms.append(ms)
                elif status in EXPECTED_4XX:
                    bucket.latencies_ms.append(ms)
                    bucket.conflicts += 1
                elif status == 503 and retry_after:
                    bucket.unavailable += 1
                else:
                    bucket.errors += 1
            if status is not None and status < 400:
                self.ok_at_last = now
            elif status == 503 and retry_after:
                self.unavailable_at.append(now)
            else:
                if status is None:
                    self.failed_at.append(now)
                if status not in EXPECTED_4XX and len(self.error_samples) < 50:
                    self.error_samples.append(f"{route} -> {status}: {detail[:200]}")

    def take(self) -> dict[str, RouteStats]:
        with self._lock:
            out = dict(self._window)
            self._window = defaultdict(RouteStats)
        return out

    def errors(self) -> int:
        with self._lock:
            return sum(r.errors for r in self.total.values())

    def ack_fixes(self, keys: list[tuple[str, str]]) -> None:
        with self._lock:
            self.acked_fixes.update(keys)

    def ack_event(self, event_id: str) -> None:
        with self._lock:
            self.acked_events.add(event_id)

    def ack_status(self, event_id: str, status: str) -> None:
        with self._lock:
            self.acked_status.append((event_id, status))


def summarize(window: dict[str, RouteStats]) -> list[dict[str, Any]]:
    """Rows {route, n, p50, p95, p99, errors, conflicts, unavailable} sorted by route."""
    rows = []
    for route in sorted(window):
        s = window[route]
        lat = sorted(s.latencies_ms)
        rows.append({"route": route, "n": len(lat), "p50": percentile(lat, 50), "p95": percentile(lat, 95),
                     "p99": percentile(lat, 99), "errors": s.errors, "conflicts": s.conflicts,
                     "unavailable": s.unavailable})
    return rows


class ApiClient:
    """A thin wrapper over one ``httpx.Client``: every call is timed and recorded under its route."""

    def __init__(self, base_url: str, stats: Stats | None = None, timeout_s: float = 30.0,
                 max_connections: int = 64) -> None:
        self.base_url = base_url.rstrip("/")
        self.stats = stats or Stats()
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, limits=limits)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, route: str, token: str | None = None, **kw: Any) -> httpx.Response | None:
        """The response (any status), or None when the server could not be reached."""
        headers = dict(kw.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        t0 = time.perf_counter()
        try:
            r = self._http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            self.stats.record(route, (time.perf_counter() - t0) * 1000, None, False, f"{type(exc).__name__}: {exc}")
            return None
        ms = (time.perf_counter() - t0) * 1000
        detail = "" if r.status_code < 400 else r.text
        self.stats.record(route, ms, r.status_code, "retry-after" in r.headers, detail)
        return r

    def json(self, method: str, path: str, route: str, token: str | None = None, **kw: Any) -> Any:
        """The JSON body of a 2xx answer, else None."""
        r = self.call(method, path, route, token, **kw)
        if r is None or r.status_code >= 300:
            return None
        return r.json()
