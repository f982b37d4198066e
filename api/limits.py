"""Limits one client cannot talk its way past (docs/security.md, settings ``ONEMAP_ANALYTICS_*``,
``ONEMAP_RATE_LIMIT_*``, ``ONEMAP_MAX_STREAMS_PER_TOKEN``).

* :class:`RateLimit` (ASGI middleware): a token bucket per bearer token (anonymous: per client
  address); over it → 429 with ``Retry-After``. Tiles and static files are not counted.
* :class:`AnalyticsSlots`: heavy analytics run at most ``analytics_concurrency`` at a time per
  process (a request waits up to ``analytics_queue_s`` for a slot, then 429 + Retry-After) and
  ``analytics_per_token`` at a time per token (429 + Retry-After), so the database pool and the
  thread pool stay free for tiles, features and writes.
* :class:`StreamLimit` (ASGI middleware): open ``/stream`` connections per token (429 + Retry-After).

A client is keyed by the SHA-256 of its token (never the token itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response
from core.errors import LimitExceededError

#: paths never counted by the rate limit (static files, tiles: a 3D view asks for hundreds a second)
UNCOUNTED = ("/tiles/", "/terrain/", "/imagery/", "/cesium/", "/viewer/", "/swagger/", "/media/")


def client_key(headers: list[tuple[bytes, bytes]] | dict[str, str], query: bytes | str = b"",
               addr: str | None = None) -> str:
    """``t:<sha256 prefix>`` of the bearer token (header, or ``access_token`` query for /stream),
    else ``a:<client address>``."""
    if isinstance(headers, dict):
        auth = headers.get("authorization", "")
    else:
        auth = next((v.decode("latin-1") for k, v in headers if k == b"authorization"), "")
    token = auth.partition(" ")[2].strip() if auth.lower().startswith("bearer ") else ""
    if not token:
        q = query.decode("latin-1") if isinstance(query, bytes) else query
        for part in q.split("&"):
            if part.startswith("access_token="):
                token = part[13:]
    if token:
        return "t:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"a:{addr or '-'}"


class RateLimit:
    """Token bucket per client: ``rate`` requests per second sustained, ``burst`` at once."""

    MAX_CLIENTS = 100_000

    def __init__(self, app: ASGIApp, rate: float, burst: int) -> None:
        self.app = app
        self.rate = rate
        self.burst = float(burst)
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str, now: float | None = None) -> float:
        """0 when allowed, else the seconds until one request is allowed."""
        now = time.monotonic() if now is None else now
        tokens, at = self.buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            wait = 0.0
        else:
            self.buckets[key] = (tokens, now)
            wait = (1 - tokens) / self.rate
        while len(self.buckets) > self.MAX_CLIENTS:
            self.buckets.popitem(last=False)
        return wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate <= 0 or scope["path"].startswith(UNCOUNTED) \
                or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client_key(scope["headers"], scope.get("query_string", b""), client[0] if client else None)
        wait = self.take(key)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            await error_response(429, f"too many requests: at most {self.rate:g}/s (burst {self.burst:g})",
                                 {"Retry-After": str(retry)})(scope, receive, send)
            return
        await self.app(scope, receive, send)


class AnalyticsSlots:
    """Per-process and per-token concurrency of heavy analytics (one per app, on the event loop)."""

    def __init__(self, concurrency: int, per_token: int, queue_s: float, retry_after_s: int) -> None:
        self.concurrency = concurrency
        self.per_token = per_token
        self.queue_s = queue_s
        self.retry_after_s = max(1, retry_after_s)
        self._sem: asyncio.Semaphore | None = None
        self.running: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.concurrency)
        if self.running.get(key, 0) >= self.per_token:
            raise LimitExceededError(
                f"at most {self.per_token} analytics requests at a time per token",
                retry_after_s=self.retry_after_s)
        self.running[key] = self.running.get(key, 0) + 1
        try:
            try:
                await asyncio.wait_for(self._sem.acquire(), timeout=self.queue_s)
            except TimeoutError:  # the server is fine, the analytics capacity is taken: 429, not 5xx
                raise LimitExceededError(
                    f"analytics busy ({self.concurrency} running, waited {self.queue_s:g} s); retry later",
                    retry_after_s=self.retry_after_s) from None
            try:
                yield
            finally:
                self._sem.release()
        finally:
            left = self.running[key] - 1
            if left:
                self.running[key] = left
            else:
                del self.running[key]


class StreamLimit:
    """ASGI middleware: open ``GET /stream`` responses per client key (429 + Retry-After beyond
    ``per_token``); a connection counts until its response ends."""

    PATH = "/stream"

    def __init__(self, app: ASGIApp, per_token: int, retry_after_s: int = 5) -> None:
        self.app = app
        self.per_token = per_token
        self.retry_after_s = max(1, retry_after_s)
        self.open: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client_key(scope["headers"], scope.get("query_string", b""), client[0] if client else None)
        if self.open.get(key, 0) >= self.per_token:
            await error_response(429, f"at most {self.per_token} open streams per token",
                                 {"Retry-After": str(self.retry_after_s)})(scope, receive, send)
            return
        self.open[key] = self.open.get(key, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self.open[key] - 1
            if left:
                self.open[key] = left
            else:
                del self.open[key]
