"""Tiles: catalog, MIME types, ETag/304, gzip (on the fly and precompressed), ranges, traversal."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api_support import make_settings


@pytest.fixture(scope="module")
def tc(tiles_dir: Path) -> Iterator[TestClient]:
    from api.app import create_app

    # The database is never touched by tile routes: point at a closed port.
    settings = make_settings("postgresql://postgres@127.0.0.1:9/none", tiles_dir)
    with TestClient(create_app(settings)) as c:
        yield c


IDENTITY = {"Accept-Encoding": "identity"}


def test_catalog_is_index_json(tc: TestClient, tiles_dir: Path) -> None:
    r = tc.get("/tilesets")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body == json.loads((tiles_dir / "index.json").read_text())
    assert body["layers"][0]["url"] == "/tiles/buildings/tileset.json"


def test_catalog_without_index_scans_folders(tmp_path: Path) -> None:
    from api.app import create_app
    from tests.api_support import write_tiles

    write_tiles(tmp_path / "t")
    (tmp_path / "t" / "index.json").unlink()
    with TestClient(create_app(make_settings("postgresql://x@127.0.0.1:9/x", tmp_path / "t"))) as c:
        body = c.get("/tilesets").json()
    assert [layer["name"] for layer in body["layers"]] == ["buildings", "trees"]
    assert body["layers"][0]["url"] == "/tiles/buildings/tileset.json"
    assert body["terrain"] == {"url": "/terrain"}


@pytest.mark.parametrize("path, mime", [
    ("/tiles/buildings/tileset.json", "application/json"),
    ("/tiles/buildings/0/0.glb", "model/gltf-binary"),
    ("/tiles/buildings/0/1.b3dm", "application/octet-stream"),
    ("/tiles/trees/a.pnts", "application/octet-stream"),
    ("/terrain/layer.json", "application/json"),
    ("/terrain/0/0/0.terrain", "application/vnd.quantized-mesh"),
])
def test_mime_types(tc: TestClient, path: str, mime: str) -> None:
    r = tc.get(path, headers=IDENTITY)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == mime
    assert r.headers["etag"].startswith('"') and r.headers["accept-ranges"] == "bytes"
    assert "max-age" in r.headers["cache-control"]


def test_body_identical_to_file(tc: TestClient, tiles_dir: Path) -> None:
    r = tc.get("/tiles/buildings/0/0.glb", headers=IDENTITY)
    assert r.content == (tiles_dir / "buildings" / "0" / "0.glb").read_bytes()
    assert "content-encoding" not in r.headers


def test_etag_304(tc: TestClient) -> None:
    r1 = tc.get("/tiles/buildings/0/0.glb", headers=IDENTITY)
    etag = r1.headers["etag"]
    r2 = tc.get("/tiles/buildings/0/0.glb", headers={**IDENTITY, "If-None-Match": etag})
    assert r2.status_code == 304 and r2.content == b""
    assert r2.headers["etag"] == etag
    r3 = tc.get("/tiles/buildings/0/0.glb", headers={**IDENTITY, "If-None-Match": '"other", ' + etag})
    assert r3.status_code == 304
    r4 = tc.get("/tiles/buildings/0/0.glb", headers={**IDENTITY, "If-None-Match": '"nope"'})
    assert r4.status_code == 200
    ims = {**IDENTITY, "If-Modified-Since": r1.headers["last-modified"]}
    r5 = tc.get("/tiles/buildings/0/0.glb", headers=ims)
    assert r5.status_code == 304


def test_etag_changes_when_file_changes(tc: TestClient, tiles_dir: Path) -> None:
    path = tiles_dir / "trees" / "b.pnts"
    path.write_bytes(b"pnts-version-1")
    e1 = tc.get("/tiles/trees/b.pnts", headers=IDENTITY).headers["etag"]
    path.write_bytes(b"pnts-version-2!")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    r = tc.get("/tiles/trees/b.pnts", headers={**IDENTITY, "If-None-Match": e1})
    assert r.status_code == 200 and r.content == b"pnts-version-2!"
    assert r.headers["etag"] != e1


def test_gzip_on_the_fly(tc: TestClient, tiles_dir: Path) -> None:
    raw = (tiles_dir / "buildings" / "0" / "0.glb").read_bytes()
    r = tc.get("/tiles/buildings/0/0.glb", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in r.headers["vary"]
    assert int(r.headers["content-length"]) < len(raw)
    assert r.content == raw  # httpx decodes
    plain = tc.get("/tiles/buildings/0/0.glb", headers=IDENTITY)
    assert plain.headers["etag"] != r.headers["etag"]  # one strong ETag per representation
    again = tc.get("/tiles/buildings/0/0.glb",
                   headers={"Accept-Encoding": "gzip", "If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


def test_precompressed_terrain(tc: TestClient, tiles_dir: Path) -> None:
    disk = (tiles_dir / "terrain" / "0" / "0" / "0.terrain").read_bytes()
    assert disk[:2] == b"\x1f\x8b"
    r = tc.get("/terrain/0/0/0.terrain", headers={"Accept-Encoding": "gzip, deflate"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["content-type"] == "application/vnd.quantized-mesh"
    assert int(r.headers["content-length"]) == len(disk)
    assert r.content == gzip.decompress(disk)
    # a client without gzip gets the decompressed bytes
    r2 = tc.get("/terrain/0/0/0.terrain", headers=IDENTITY)
    assert "content-encoding" not in r2.headers and r2.content == gzip.decompress(disk)
    # an uncompressed terrain tile is served as is (gzip applied on the fly if accepted)
    r3 = tc.get("/terrain/0/1/0.terrain", headers=IDENTITY)
    assert r3.content == b"\x00raw-mesh" * 50


def test_terrain_with_cesium_query_and_accept(tc: TestClient) -> None:
    r = tc.get("/terrain/0/0/0.terrain?v=1.0.0&extensions=octvertexnormals",
               headers={"Accept": "application/vnd.quantized-mesh;extensions=octvertexnormals,"
                                  "application/octet-stream;q=0.9,*/*;q=0.01"})
    assert r.status_code == 200


def test_range_requests(tc: TestClient, tiles_dir: Path) -> None:
    raw = (tiles_dir / "buildings" / "0" / "0.glb").read_bytes()
    size = len(raw)
    r = tc.get("/tiles/buildings/0/0.glb", headers={"Range": "bytes=0-3", "Accept-Encoding": "gzip"})
    assert r.status_code == 206 and r.content == b"glTF"
    assert r.headers["content-range"] == f"bytes 0-3/{size}"
    assert "content-encoding" not in r.headers
    r = tc.get("/tiles/buildings/0/0.glb", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == raw[-10:]
    r = tc.get("/tiles/buildings/0/0.glb", headers={"Range": f"bytes={size - 5}-"})
    assert r.status_code == 206 and r.content == raw[-5:]
    r = tc.get("/tiles/buildings/0/0.glb", headers={"Range": f"bytes=100-{size + 100}"})
    assert r.status_code == 206 and r.content == raw[100:]
    r = tc.get("/tiles/buildings/0/0.glb", headers={"Range": f"bytes={size}-{size + 10}"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"
    # If-Range with a stale validator: the whole file
    r = tc.get("/tiles/buildings/0/0.glb", headers={"Range": "bytes=0-3", "If-Range": '"stale"', **IDENTITY})
    assert r.status_code == 200 and r.content == raw
    # malformed / multiple ranges are ignored: 200 with everything
    r = tc.get("/tiles/buildings/0/0.glb", headers={"Range": "bytes=0-1,4-5", **IDENTITY})
    assert r.status_code == 200 and len(r.content) == size


@pytest.mark.parametrize("path", [
    "/tiles/buildings/../../secret.txt",
    "/tiles/buildings/%2e%2e/%2e%2e/secret.txt",
    "/tiles/buildings/%2E%2E%2F%2E%2E%2Fsecret.txt",
    "/tiles/buildings/..%2f..%2fsecret.txt",
    "/tiles/buildings//etc/passwd",
    "/tiles/buildings/%2Fetc%2Fpasswd",
    "/tiles/..%2f..%2fsecret.txt/x",
    "/terrain/../../secret.txt",
    "/terrain/%2e%2e/%2e%2e/secret.txt",
    "/tiles/buildings/escape.json",  # symlink pointing outside the root
    "/tiles/buildings/0",  # a directory
    "/tiles/buildings/0/0.glb%00.json",
    "/tiles/buildings/nope.glb",
])
def test_no_traversal(tc: TestClient, path: str) -> None:
    r = tc.get(path)
    assert r.status_code in (404, 400), (path, r.status_code)
    assert b"outside the tiles root" not in r.content
    assert b"root:" not in r.content
    assert r.headers["content-type"].startswith("application/json")


def test_traversal_raw_socket(tiles_dir: Path) -> None:
    """Send the raw, un-normalised request line to a real server (clients normalise '..')."""
    import socket

    from tests.api_support import running_server

    settings = make_settings("postgresql://x@127.0.0.1:9/x", tiles_dir)
    with running_server(settings) as base:
        port = int(base.rsplit(":", 1)[1])
        for target in ("/tiles/buildings/../../secret.txt", "/tiles/buildings/%2e%2e/%2e%2e/secret.txt",
                       "/terrain/..%2F..%2Fsecret.txt", "/tiles/buildings/escape.json"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            status = int(data.split(b" ", 2)[1])
            assert status in (400, 404), (target, data[:200])
            assert b"outside the tiles root" not in data


def test_cors_and_head(tc: TestClient) -> None:
    r = tc.get("/tiles/buildings/tileset.json", headers={"Origin": "http://127.0.0.1:8000"})
    assert r.headers["access-control-allow-origin"] == "http://127.0.0.1:8000"
    assert "ETag" in r.headers["access-control-expose-headers"]
    r = tc.get("/tiles/buildings/tileset.json", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = tc.options("/tiles/buildings/tileset.json", headers={
        "Origin": "http://localhost:8000", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range"})
    assert pre.status_code == 200
    h = tc.head("/tiles/buildings/0/0.glb", headers=IDENTITY)
    assert h.status_code == 200 and h.content == b""
    assert int(h.headers["content-length"]) > 0


def test_cache_is_bounded(tiles_dir: Path) -> None:
    from api.tilestore import TileStore

    store = TileStore(tiles_dir, cache_bytes=4000, max_file_bytes=1 << 20, max_age_s=1, json_max_age_s=1,
                      gzip_min_bytes=512)
    for rel in ("buildings/0/0.glb", "buildings/0/1.b3dm", "buildings/tileset.json", "terrain/layer.json"):
        assert store.get(rel) is not None
    assert store.used_bytes <= 4000 + 11_000  # at most one oversized entry kept
    assert store.peek("buildings/0/0.glb") is None  # evicted (least recently used)
    t = time.perf_counter()
    assert store.get("terrain/layer.json") is not None
    assert time.perf_counter() - t < 5


def test_large_files_streamed_from_disk(tiles_dir: Path) -> None:
    from api.app import create_app

    settings = make_settings("postgresql://x@127.0.0.1:9/x", tiles_dir, tile_cache_max_file_bytes=1000)
    raw = (tiles_dir / "buildings" / "0" / "0.glb").read_bytes()
    with TestClient(create_app(settings)) as c:
        r = c.get("/tiles/buildings/0/0.glb", headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.content == raw and "content-encoding" not in r.headers
        r2 = c.get("/tiles/buildings/0/0.glb", headers={"If-None-Match": r.headers["etag"]})
        assert r2.status_code == 304
        r3 = c.get("/tiles/buildings/0/0.glb", headers={"Range": "bytes=4-7"})
        assert r3.status_code == 206 and r3.content == raw[4:8]
