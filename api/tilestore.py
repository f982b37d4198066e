"""Static tiles from disk, fast: an in-memory LRU of file contents, ETags and gzip variants.

Per request the only file-system work is one ``os.stat`` (to notice rebuilt files); contents,
strong ETags (BLAKE2b of the bytes) and gzip encodings are computed once per (mtime, size) and
kept in memory up to ``tile_cache_bytes``. Files bigger than ``tile_cache_max_file_bytes`` are
read per request (their ETag is still cached).

Paths are resolved with ``realpath`` and must stay under the root: ``..`` (also percent-encoded,
which the server decodes before routing), absolute paths, NUL bytes, backslashes and symlinks
pointing outside are all "not found".

Files already gzip-compressed on disk (first bytes ``1f 8b``, typical for quantized-mesh
``.terrain``) are sent as stored with ``Content-Encoding: gzip``; a client that does not accept
gzip gets them decompressed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Final

from starlette.datastructures import Headers
from starlette.responses import Response

MIME_TYPES: Final[dict[str, str]] = {
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".b3dm": "application/octet-stream",
    ".pnts": "application/octet-stream",
    ".i3dm": "application/octet-stream",
    ".cmpt": "application/octet-stream",
    ".subtree": "application/octet-stream",
    ".bin": "application/octet-stream",
    ".terrain": "application/vnd.quantized-mesh",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".ktx2": "image/ktx2",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
}
#: Extensions worth gzip-compressing on the fly (images are already compressed).
COMPRESSIBLE: Final[frozenset[str]] = frozenset(
    {".json", ".geojson", ".gltf", ".glb", ".b3dm", ".pnts", ".i3dm", ".cmpt", ".subtree", ".bin",
     ".terrain", ".txt", ".xml"}
)
JSON_ENTRY_POINTS: Final[frozenset[str]] = frozenset(
    {"tileset.json", "layer.json", "index.json", "imagery.json", "tilemapresource.xml"})
GZIP_MAGIC: Final[bytes] = b"\x1f\x8b"


@dataclass
class FileEntry:
    """One file on disk, as of (mtime_ns, size)."""

    real_path: str
    mtime_ns: int
    size: int
    mime: str
    cache_control: str
    etag: str  # strong ETag of the identity representation
    last_modified: str
    body: bytes | None  # bytes on disk (None for files too large to cache)
    precompressed: bool  # the bytes on disk are gzip
    compressible: bool
    gz: bytes | None = None  # gzip representation (precompressed: the disk bytes)
    identity: bytes | None = None  # identity representation (precompressed: decompressed)
    gz_tried: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def etag_gz(self) -> str:
        return self.etag[:-1] + '-gz"'

    def memory(self) -> int:
        body = self.body or b""
        extra = sum(len(b) for b in (self.gz, self.identity) if b is not None and b is not self.body)
        return len(body) + extra + 256


class TileStore:
    def __init__(
        self, root: Path, *, cache_bytes: int, max_file_bytes: int, max_age_s: int,
        json_max_age_s: int, gzip_min_bytes: int,
    ) -> None:
        self.root = Path(root)
        self.cache_bytes = cache_bytes
        self.max_file_bytes = max_file_bytes
        self.max_age_s = max_age_s
        self.json_max_age_s = json_max_age_s
        self.gzip_min_bytes = gzip_min_bytes
        self._entries: OrderedDict[str, FileEntry] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()
        self._real_root: str | None = None

    # -- paths --------------------------------------------------------------------------------
    def real_root(self) -> str | None:
        if self._real_root is None:
            if not self.root.is_dir():
                return None
            self._real_root = os.path.realpath(self.root)
        return self._real_root

    def resolve(self, rel: str) -> str | None:
        """Real path of ``rel`` under the root, or None if it escapes the root or is not a file."""
        if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
            return None
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            return None
        root = self.real_root()
        if root is None:
            return None
        real = os.path.realpath(os.path.join(root, rel))
        if not real.startswith(root + os.sep):
            return None
        return real

    # -- cache --------------------------------------------------------------------------------
    def peek(self, rel: str) -> FileEntry | None:
        """The cached entry if it is still current (one stat), else None. Never reads files."""
        entry = self._entries.get(rel)
        if entry is None:
            return None
        try:
            st = os.stat(entry.real_path)
        except OSError:
            self._drop(rel)
            return None
        if st.st_mtime_ns == entry.mtime_ns and st.st_size == entry.size:
            try:
                self._entries.move_to_end(rel)
            except KeyError:
                pass
            return entry
        self._drop(rel)
        return None

    def get(self, rel: str) -> FileEntry | None:
        """The entry for ``rel`` (reading, hashing and compressing it on a miss), or None."""
        entry = self.peek(rel)
        if entry is not None:
            return entry
        real = self.resolve(rel)
        if real is None:
            return None
        try:
            st = os.stat(real)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        entry = self._load(rel, real, st)
        self._put(rel, entry)  # large files: only their metadata (ETag) is kept
        return entry

    def _load(self, rel: str, real: str, st: os.stat_result) -> FileEntry:
        ext = os.path.splitext(rel)[1].lower()
        name = rel.rsplit("/", 1)[-1]
        mime = MIME_TYPES.get(ext, "application/octet-stream")
        max_age = self.json_max_age_s if name in JSON_ENTRY_POINTS else self.max_age_s
        if st.st_size <= self.max_file_bytes:
            with open(real, "rb") as fh:
                body = fh.read()
            digest = hashlib.blake2b(body, digest_size=16).hexdigest()
            precompressed = body[:2] == GZIP_MAGIC
        else:
            body = None
            h = hashlib.blake2b(digest_size=16)
            with open(real, "rb") as fh:
                head = fh.read(2)
                h.update(head)
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            digest = h.hexdigest()
            precompressed = head == GZIP_MAGIC
        entry = FileEntry(
            real_path=real, mtime_ns=st.st_mtime_ns, size=st.st_size, mime=mime,
            cache_control=f"public, max-age={max_age}", etag=f'"{digest}"',
            last_modified=formatdate(st.st_mtime, usegmt=True), body=body,
            precompressed=precompressed and body is not None,
            compressible=ext in COMPRESSIBLE and body is not None and st.st_size >= self.gzip_min_bytes,
        )
        if entry.precompressed:
            entry.gz = body
        elif entry.compressible:
            self.gzip_body(entry)
        return entry

    def _put(self, rel: str, entry: FileEntry) -> None:
        with self._lock:
            old = self._entries.pop(rel, None)
            if old is not None:
                self._used -= old.memory()
            self._entries[rel] = entry
            self._used += entry.memory()
            self._evict()

    def _grow(self, entry: FileEntry, before: int) -> None:
        with self._lock:
            self._used += entry.memory() - before
            self._evict()

    def _evict(self) -> None:
        while self._used > self.cache_bytes and len(self._entries) > 1:
            _, victim = self._entries.popitem(last=False)
            self._used -= victim.memory()

    def _drop(self, rel: str) -> None:
        with self._lock:
            old = self._entries.pop(rel, None)
            if old is not None:
                self._used -= old.memory()

    @property
    def used_bytes(self) -> int:
        return self._used

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._used = 0
            self._real_root = None

    # -- representations --------------------------------------------------------------------
    def gzip_body(self, entry: FileEntry) -> bytes | None:
        """The gzip representation, compressed once (None if not worth it)."""
        if entry.gz is not None or entry.gz_tried:
            return entry.gz
        with entry.lock:
            if not entry.gz_tried and entry.body is not None:
                packed = gzip.compress(entry.body, compresslevel=6, mtime=0)
                if len(packed) < 0.9 * len(entry.body):
                    entry.gz = packed
                entry.gz_tried = True
        return entry.gz

    def identity_body(self, entry: FileEntry) -> bytes:
        if not entry.precompressed:
            assert entry.body is not None
            return entry.body
        if entry.identity is None:
            with entry.lock:
                if entry.identity is None:
                    before = entry.memory()
                    entry.identity = zlib.decompress(entry.body or b"", wbits=31)
                    self._grow(entry, before)
        return entry.identity


# -- HTTP -----------------------------------------------------------------------------------
def _accepts_gzip(headers: Headers) -> bool:
    ae = headers.get("accept-encoding")
    if not ae or "gzip" not in ae:
        return False
    for part in ae.split(","):
        token, _, params = part.strip().partition(";")
        if token.strip().lower() in ("gzip", "*"):
            q = params.strip()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return True
            return True
    return False


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison."""
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    for candidate in header.split(","):
        if candidate.strip().removeprefix("W/") == bare:
            return True
    return False


def _parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """(start, end inclusive) for one satisfiable range; False if unsatisfiable; None to ignore."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        return None  # unknown unit or multiple ranges: send the whole file
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return False
            return (max(size - n, 0), size - 1) if size > 0 else False
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or end < start:
        return None
    if start >= size:
        return False
    return start, min(end, size - 1)


def _read_range(path: str, start: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(length)


def file_response(store: TileStore, entry: FileEntry, headers: Headers, method: str = "GET") -> Response:
    """200/206/304/416 for ``entry`` honouring If-None-Match, If-Modified-Since, Range, gzip."""
    range_header = headers.get("range")
    use_gzip = (
        range_header is None
        and (entry.precompressed or entry.compressible)
        and _accepts_gzip(headers)
    )
    gz = store.gzip_body(entry) if use_gzip else None
    etag = entry.etag_gz if gz is not None else entry.etag
    base = {
        "etag": etag,
        "cache-control": entry.cache_control,
        "last-modified": entry.last_modified,
        "accept-ranges": "bytes",
    }
    if entry.precompressed or entry.compressible:
        base["vary"] = "Accept-Encoding"
    inm = headers.get("if-none-match")
    if inm is not None:
        if _etag_matches(inm, etag):
            return Response(status_code=304, headers=base)
    else:
        ims = headers.get("if-modified-since")
        if ims and _not_modified_since(ims, entry.mtime_ns):
            return Response(status_code=304, headers=base)

    if gz is not None:
        base["content-encoding"] = "gzip"
        return Response(gz, status_code=200, headers=base, media_type=entry.mime)

    size = entry.size
    if entry.body is not None:
        body: bytes | None = store.identity_body(entry)
        size = len(body)
    else:
        body = None
    if range_header is not None and _if_range_ok(headers.get("if-range"), entry):
        rng = _parse_range(range_header, size)
        if rng is False:
            base["content-range"] = f"bytes */{size}"
            return Response(
                b'{"detail": "requested range not satisfiable", "status": 416}', status_code=416,
                headers=base, media_type="application/json",
            )
        if rng:
            start, end = rng
            if body is not None:
                part = body[start:end + 1]
            else:
                part = _read_range(entry.real_path, start, end - start + 1)
            base["content-range"] = f"bytes {start}-{end}/{size}"
            return Response(part, status_code=206, headers=base, media_type=entry.mime)
    if body is None:
        body = _read_range(entry.real_path, 0, entry.size)
    return Response(body, status_code=200, headers=base, media_type=entry.mime)


def _if_range_ok(if_range: str | None, entry: FileEntry) -> bool:
    if if_range is None:
        return True
    if if_range.startswith('"') or if_range.startswith("W/"):
        return if_range == entry.etag
    return if_range == entry.last_modified


def _not_modified_since(ims: str, mtime_ns: int) -> bool:
    try:
        since = parsedate_to_datetime(ims).timestamp()
    except (TypeError, ValueError):
        return False
    return int(mtime_ns // 1_000_000_000) <= since
