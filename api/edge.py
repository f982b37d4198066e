"""What every request and response passes at the edge (pure ASGI, outermost; docs/security.md).

* :class:`InputGuard` — every string a client sends must be text PostgreSQL and Python can hold:
  a NUL, an invalid UTF-8 percent-encoding or a lone surrogate in the path, a query parameter,
  a header or a JSON body answers 400 naming the parameter (before routing, so no route can
  turn it into a 500). The ``Host`` header must be trusted (``ONEMAP_TRUSTED_HOSTS``) unless
  links are built from ``ONEMAP_PUBLIC_URL``: a foreign Host never reaches a link.
* :class:`SecurityHeaders` — every response carries the Content-Security-Policy of
  :func:`content_security_policy` (the viewer's documents a measured, looser one),
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy`` and ``frame-ancestors``
  (``ONEMAP_FRAME_ANCESTORS``, default ``'none'``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from core.settings import Settings

#: a JSON escape that decodes to NUL or to a lone UTF-16 surrogate half (checked precisely after)
_SUSPICIOUS_JSON = re.compile(rb"\\u0000|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_BAD_CHARS = re.compile(r"[\x00\ud800-\udfff]")
_HEADER_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class EdgeInputError(Exception):
    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where


def _text(raw: bytes, where: str) -> str:
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EdgeInputError(where, "is not valid UTF-8") from None
    if "\x00" in value:
        raise EdgeInputError(where, "contains a NUL character")
    return value


def check_path(raw_path: bytes) -> None:
    _text(unquote_to_bytes(raw_path), "path")


def check_query(query: bytes) -> None:
    for part in query.split(b"&"):
        if not part:
            continue
        key, _, value = part.partition(b"=")
        name = _text(unquote_to_bytes(key.replace(b"+", b" ")), "query parameter name")
        _text(unquote_to_bytes(value.replace(b"+", b" ")), f"query parameter {name!r}")


def check_headers(headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if _HEADER_BAD.search(value):
            raise EdgeInputError(f"header {name.decode('latin-1')!r}", "contains a control character")


def _walk(value: Any, where: str) -> None:
    if isinstance(value, str):
        bad = _BAD_CHARS.search(value)
        if bad:
            what = "a NUL character" if bad.group() == "\x00" else "a lone surrogate (invalid Unicode)"
            raise EdgeInputError(where, f"contains {what}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk(k, f"{where} key")
            _walk(v, f"{where}.{k}" if isinstance(k, str) else where)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk(v, f"{where}[{i}]")


def check_body(body: bytes, content_type: str) -> None:
    """Raw NUL / invalid UTF-8 anywhere; in JSON also escaped NULs and lone surrogates (the
    JSON path of the string is named). Cheap unless the bytes look suspicious."""
    if not body:
        return
    if "json" not in content_type and "text" not in content_type:
        return
    _text(body, "body")
    if "json" in content_type and _SUSPICIOUS_JSON.search(body):
        try:
            doc = json.loads(body)
        except ValueError:
            return  # not JSON: the route answers 422 itself
        _walk(doc, "body")


class InputGuard:
    """400 for NUL/invalid Unicode in path, query, headers or body; 400 for an untrusted Host."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.public_url = settings.api.public_url
        # the address the server is bound to is trusted too (not a wildcard like 0.0.0.0)
        bound = {settings.api.host.lower()} - {"0.0.0.0", "::", "[::]"}
        self.trusted = frozenset(settings.api.trusted_hosts) | bound
        self.max_body = settings.api.max_body_bytes

    def host_ok(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.public_url is not None or "*" in self.trusted:
            return True
        host = next((v for k, v in headers if k == b"host"), None)
        if host is None:
            return True  # HTTP/1.0 without Host: links fall back to the server address
        name = host.decode("latin-1").lower()
        name = name.rsplit(":", 1)[0] if not name.endswith("]") else name
        if name in self.trusted:
            return True
        return any(t.startswith("*.") and name.endswith(t[1:]) for t in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        try:
            check_path(scope.get("raw_path") or scope["path"].encode("utf-8", "surrogatepass"))
            check_query(scope.get("query_string", b""))
            check_headers(headers)
        except EdgeInputError as exc:
            await error_response(400, f"invalid request: {exc}", parameter=exc.where)(scope, receive, send)
            return
        if not self.host_ok(headers):
            await error_response(
                400, "untrusted Host header", hint="set ONEMAP_PUBLIC_URL or add the host to ONEMAP_TRUSTED_HOSTS",
            )(scope, receive, send)
            return
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        content_type = next((v for k, v in headers if k == b"content-type"), b"").decode("latin-1").lower()
        if "json" not in content_type and "text" not in content_type:
            await self.app(scope, receive, send)
            return
        # Read the (size-limited: BodyLimitMiddleware sits inside, so count here too) body once,
        # check it, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await error_response(413, f"request body larger than {self.max_body} bytes",
                                     {"connection": "close"})(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            check_body(body, content_type)
        except EdgeInputError as exc:
            await error_response(400, f"invalid request: {exc}", parameter=exc.where)(scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive),
                       send)


def _replay(messages: list[Message], receive: Receive | None = None) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        if receive is not None:
            return await receive()
        return {"type": "http.disconnect"}

    return replay


def public_base(request: Request) -> str:
    """Base of absolute links: ``ONEMAP_PUBLIC_URL`` or (Host checked by :class:`InputGuard`) the request's."""
    public = request.app.state.onemap.settings.api.public_url
    return public if public else str(request.base_url).rstrip("/")


# --- response headers -------------------------------------------------------------------------
def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url.replace("{s}", "a").split("{", 1)[0])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.netloc
    if "{s}" in url:  # subdomain template: allow the parent domain's subdomains
        host = "*." + host.split(".", 1)[1] if "." in host else host
    return f"{parts.scheme}://{host}"




def is_viewer_document(path: str) -> bool:
    return path == "/" or path.startswith("/viewer/")


def is_cesium_worker(path: str) -> bool:
    """Cesium's worker scripts: a dedicated worker runs under the CSP of its own script response."""
    return path.startswith("/cesium/Workers/")


def content_security_policy(settings: Settings, script_hashes: tuple[str, ...] = (), *,
                            viewer: bool = False, worker: bool = False) -> str:
    """The CSP. Everything from the origin itself; beyond that only what was measured to be
    needed (a strict policy in headless Chromium, violations recorded; tests/test_viewer_browser.py
    records 0 with this one):

    * viewer documents (``/``, ``/viewer/…``) only: ``script-src 'unsafe-eval'`` — Cesium bundles
      Knockout, which evaluates ``(0,eval)("this")`` at load and compiles its widgets' bindings
      with ``new Function``; ``style-src 'unsafe-inline'`` — Cesium's widgets and the viewer set
      style attributes and inject ``<style>`` elements; ``worker-src blob:`` — Cesium starts its
      workers from blob: URLs, and ``script-src blob:`` — those workers ``importScripts()`` a
      blob: URL (refused, no terrain tile is ever decoded and the scene never finishes loading);
    * Cesium's worker scripts (``/cesium/Workers/…``; a worker runs under its script's CSP):
      ``script-src 'wasm-unsafe-eval'`` — the Draco decoder (KHR_draco_mesh_compression tiles:
      ``onemap tiles mesh|buildings --compress draco``) compiles WebAssembly in its worker, which
      a script-src without it refuses (the tiles then fail to load);
    * ``img-src data: blob:`` — Cesium's inline icons, textures decoded from blob: URLs;
    * an online base map's origin in ``img-src``/``connect-src`` only when one is configured;
    * other pages: inline scripts only by hash (the /docs page's Swagger UI start-up script).
    """
    basemap = getattr(settings, "basemap", None)
    extra = _origin(getattr(basemap, "basemap_url", None))
    ext = f" {extra}" if extra else ""
    hashes = "".join(f" 'sha256-{h}'" for h in script_hashes)
    return "; ".join((
        "default-src 'self'",
        f"script-src 'self'{hashes}" + (" 'unsafe-eval' blob:" if viewer else "")
        + (" 'wasm-unsafe-eval'" if worker else ""),
        "worker-src 'self'" + (" blob:" if viewer else ""),
        f"img-src 'self' data: blob:{ext}",
        f"connect-src 'self' data: blob:{ext}",
        "style-src 'self'" + (" 'unsafe-inline'" if viewer else ""),
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        f"frame-ancestors {settings.api.frame_ancestors}",
    ))


_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


class SecurityHeaders:
    """Adds the CSP, nosniff, Referrer-Policy (and X-Frame-Options for old browsers) to every response."""

    HASHED_PAGES = ("/docs",)

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.csp = content_security_policy(settings).encode()
        self.viewer_csp = content_security_policy(settings, viewer=True).encode()
        self.worker_csp = content_security_policy(settings, worker=True).encode()
        frame = settings.api.frame_ancestors
        self.static = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", settings.api.referrer_policy.encode()),
        ]
        if frame == "'none'":
            self.static.append((b"x-frame-options", b"DENY"))
        elif frame == "'self'":
            self.static.append((b"x-frame-options", b"SAMEORIGIN"))

    def _headers(self, raw: list[tuple[bytes, bytes]], csp: bytes) -> list[tuple[bytes, bytes]]:
        have = {k.lower() for k, _ in raw}
        out = list(raw)
        for k, v in [(b"content-security-policy", csp), *self.static]:
            if k not in have:
                out.append((k, v))
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.HASHED_PAGES:
            await self._hashed(scope, receive, send)
            return

        path = scope["path"]
        csp = self.viewer_csp if is_viewer_document(path) else self.worker_csp if is_cesium_worker(path) else self.csp

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": self._headers(list(message.get("headers", [])), csp)}
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _hashed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Small generated HTML pages with an inline script: buffer, hash the scripts, then send."""
        start: Message | None = None
        body = bytearray()

        async def buffer(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if message.get("more_body", False):
                    return
                assert start is not None
                hashes = tuple(base64.b64encode(hashlib.sha256(m).digest()).decode()
                               for m in _INLINE_SCRIPT.findall(bytes(body)))
                csp = content_security_policy(self.settings, hashes).encode()
                await send({**start, "headers": self._headers(list(start.get("headers", [])), csp)})
                await send({"type": "http.response.body", "body": bytes(body)})
                return
            await send(message)

        await self.app(scope, receive, buffer)
