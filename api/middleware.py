"""Pure-ASGI middleware (no per-request Python overhead beyond a header check)."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.tilestore import TileStore, file_response


class _TooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body parsing passes it through."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body larger than {max_bytes} bytes")


class BodyLimitMiddleware:
    """413 for request bodies above ``max_bytes``: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await error_response(400, "invalid Content-Length")(scope, receive, send)
                    return
                if length > self.max_bytes:
                    await self._reject(scope, receive, send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, f"request body larger than {self.max_bytes} bytes",
                                  {"connection": "close"})
        await response(scope, receive, send)


class TileFastPath:
    """Serve cached tiles (``/tiles/…``, ``/terrain/…``, ``/imagery/…``) before the FastAPI stack.

    Only GET/HEAD requests whose file is already in the tile cache are answered here (one stat,
    no routing, no dependency solving); everything else — misses, errors, preflights — goes to
    the app, which loads the file into the cache. CORS headers are added like CORSMiddleware.
    """

    PREFIXES = ("/tiles/", "/terrain/", "/imagery/")

    def __init__(self, app: ASGIApp, store: TileStore, cors_origins: list[str],
                 expose_headers: str) -> None:
        self.app = app
        self.store = store
        self.cors_all = "*" in cors_origins
        self.cors_origins = frozenset(cors_origins)
        self.expose = expose_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/tiles/"):
            rel = path[7:]
            if "/" not in rel:
                await self.app(scope, receive, send)
                return
        elif path.startswith("/terrain/"):
            rel = "terrain/" + path[9:]
        elif path.startswith("/imagery/"):
            rel = "imagery/" + path[9:]
        else:
            await self.app(scope, receive, send)
            return
        entry = self.store.peek(rel)
        if entry is None or entry.body is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        response = file_response(self.store, entry, headers, scope["method"])
        origin = headers.get("origin")
        if origin is not None and (self.cors_all or origin in self.cors_origins):
            response.headers["access-control-allow-origin"] = "*" if self.cors_all else origin
            response.headers["access-control-expose-headers"] = self.expose
            response.headers["vary"] = (response.headers.get("vary", "") + ", Origin").lstrip(", ")
        await response(scope, receive, send)
