"""Reality-mesh deliveries -> textured parts in absolute source coordinates.

Two kinds of source:

* a ContextCapture / DJI Terra / Smart3D **OBJ export** folder: ``metadata.xml`` (``<SRS>``,
  ``<SRSOrigin>x,y,z</SRSOrigin>``) and ``Data/Tile_+XXX_+YYY/Tile_+XXX_+YYY.obj`` (+ ``.mtl`` and
  textures). Vertices are relative to SRSOrigin, z orthometric. Each export tile is a leaf.
* **one mesh file** (OBJ, PLY, glTF/glb) with ``src_crs`` and ``origin`` (x, y, z added to its
  vertices; glTF's y-up axes are turned to x east, y north, z up). It is cut into leaves of
  ``leaf_size`` metres by triangle centroid.

Every leaf is a list of :class:`Part` (one per material): positions, faces, optional UVs (glTF
convention: v down) with the texture image, or vertex colours.
"""

from __future__ import annotations

import hashlib
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyproj import CRS

from core.errors import InputError

log = logging.getLogger(__name__)

TILE_DIR = re.compile(r"^Tile_([+-]\d+)_([+-]\d+)$")
MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf")


@dataclass
class Part:
    """One material's triangles. ``positions`` (n, 3) float64, ``faces`` (m, 3) int64; ``uv``
    (n, 2) in glTF convention with ``image`` (h, w, 3|4 uint8), or ``colors`` (n, 4) uint8, or
    neither (``color`` RGBA 0..1)."""

    positions: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    image: np.ndarray | None = None
    colors: np.ndarray | None = None
    color: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
    name: str = ""

    @property
    def n_triangles(self) -> int:
        return int(len(self.faces))


@dataclass
class MeshSource:
    crs: CRS
    origin: tuple[float, float, float]
    leaves: dict[tuple[int, int], list[Part]] = field(default_factory=dict)
    fingerprints: dict[tuple[int, int], str] = field(default_factory=dict)
    files: int = 0

    @property
    def triangles(self) -> int:
        return sum(p.n_triangles for parts in self.leaves.values() for p in parts)

    @property
    def vertices(self) -> int:
        return sum(len(p.positions) for parts in self.leaves.values() for p in parts)


def parse_origin(text: str | None) -> tuple[float, float, float]:
    if not text:
        return (0.0, 0.0, 0.0)
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError as exc:
        raise InputError(f"origin {text!r}: expected X,Y,Z numbers") from exc
    if len(vals) == 2:
        vals.append(0.0)
    if len(vals) != 3:
        raise InputError(f"origin {text!r}: expected X,Y,Z")
    return (vals[0], vals[1], vals[2])


def read_metadata(path: Path) -> tuple[CRS, tuple[float, float, float]]:
    """``metadata.xml`` of an export: (CRS, SRSOrigin)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{path}: not readable XML ({exc})") from exc
    srs = (root.findtext("SRS") or "").strip()
    if not srs:
        raise InputError(f"{path}: no <SRS>", hint="ContextCapture writes e.g. <SRS>EPSG:4548</SRS>")
    if srs.upper().startswith("ENU:"):
        raise InputError(f"{path}: local ENU SRS {srs!r} is not supported; export in a projected CRS")
    try:
        crs = CRS.from_user_input(srs)
    except Exception as exc:  # pyproj.exceptions.CRSError
        raise InputError(f"{path}: <SRS>{srs}</SRS> is not a CRS pyproj knows ({exc})") from exc
    return crs, parse_origin(root.findtext("SRSOrigin"))


def _image_array(material) -> np.ndarray | None:
    img = getattr(material, "image", None)
    if img is None:
        img = getattr(material, "baseColorTexture", None)
    if img is None:
        return None
    return np.asarray(img.convert("RGBA") if img.mode not in ("RGB", "RGBA") else img)


def _material_color(material) -> tuple[float, float, float, float]:
    for attr in ("main_color", "baseColorFactor", "diffuse"):
        c = getattr(material, attr, None)
        if c is not None:
            c = np.asarray(c, float).ravel()
            if len(c) >= 3:
                c = c / 255.0 if c.max() > 1.0 else c
                return (float(c[0]), float(c[1]), float(c[2]), float(c[3]) if len(c) > 3 else 1.0)
    return (0.8, 0.8, 0.8, 1.0)


def load_parts(path: Path, offset: tuple[float, float, float], gltf_axes: bool = False) -> list[Part]:
    """A mesh file -> parts (one per geometry/material), vertices + ``offset``."""
    import trimesh

    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # trimesh raises many kinds
        raise InputError(f"{path}: cannot read the mesh ({type(exc).__name__}: {exc})") from exc
    if isinstance(loaded, trimesh.Trimesh):
        items = [(path.stem, loaded, np.eye(4))]
    else:
        items = []
        for node in loaded.graph.nodes_geometry:
            matrix, gname = loaded.graph[node]
            items.append((gname, loaded.geometry[gname], matrix))
    parts = []
    for name, mesh, matrix in items:
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            continue
        v = np.asarray(mesh.vertices, float)
        if not np.allclose(matrix, np.eye(4)):
            v = v @ matrix[:3, :3].T + matrix[:3, 3]
        if gltf_axes:  # glTF y-up -> x east, y north, z up
            v = np.column_stack([v[:, 0], -v[:, 2], v[:, 1]])
        v = v + np.asarray(offset, float)
        if not np.isfinite(v).all():
            raise InputError(f"{path}: {name}: non-finite vertex coordinates")
        part = Part(positions=v, faces=np.asarray(mesh.faces, np.int64), name=str(name))
        visual = mesh.visual
        uv = getattr(visual, "uv", None)
        material = getattr(visual, "material", None)
        image = _image_array(material) if material is not None else None
        if uv is not None and image is not None and len(uv) == len(v):
            uv = np.asarray(uv, float)
            part.uv = np.column_stack([uv[:, 0], 1.0 - uv[:, 1]])  # OBJ/trimesh v up -> glTF v down
            part.image = image
        elif getattr(visual, "kind", None) == "vertex":
            part.colors = np.asarray(visual.vertex_colors, np.uint8)
        if material is not None:
            part.color = _material_color(material)
        parts.append(part)
    if not parts:
        raise InputError(f"{path}: no triangles")
    return parts


def _files_digest(paths: list[Path]) -> str:
    h = hashlib.sha1()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def read_export(folder: Path) -> MeshSource:
    """A ContextCapture-style OBJ export (folder with metadata.xml and Data/)."""
    meta = folder / "metadata.xml"
    if not meta.exists():
        raise InputError(f"{folder}: no metadata.xml", hint="an OBJ export folder holds metadata.xml and Data/")
    crs, origin = read_metadata(meta)
    data = folder / "Data" if (folder / "Data").is_dir() else folder
    src = MeshSource(crs=crs, origin=origin)
    for tile_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        m = TILE_DIR.match(tile_dir.name)
        if not m:
            log.warning("%s: not a Tile_+XXX_+YYY folder, skipped", tile_dir)
            continue
        obj = tile_dir / f"{tile_dir.name}.obj"
        if not obj.exists():
            raise InputError(f"{tile_dir}: {obj.name} missing",
                             hint="export the tiles as OBJ; LOD pyramids (_L??) are rebuilt by onemap")
        key = (int(m.group(1)), int(m.group(2)))
        src.leaves[key] = load_parts(obj, origin)
        src.fingerprints[key] = _files_digest([p for p in tile_dir.iterdir() if p.is_file()])
        src.files += 1
    if not src.leaves:
        raise InputError(f"{data}: no Tile_+XXX_+YYY folders with OBJ files")
    return src


def read_single(path: Path, crs: CRS | str | None, origin: tuple[float, float, float], leaf_size: float) -> MeshSource:
    """One OBJ/PLY/glTF file, cut into ``leaf_size`` m leaves by triangle centroid."""
    if crs is None:
        raise InputError(f"{path}: a single mesh file needs --src-crs (and --origin when its vertices are local)")
    try:
        crs = CRS.from_user_input(crs)
    except Exception as exc:
        raise InputError(f"--src-crs {crs!r}: not a CRS pyproj knows ({exc})") from exc
    if not crs.is_projected:
        raise InputError(f"--src-crs {crs.name}: reality meshes need a projected CRS (metres)")
    parts = load_parts(path, origin, gltf_axes=path.suffix.lower() in (".glb", ".gltf"))
    src = MeshSource(crs=crs, origin=origin, files=1)
    lo = np.min([p.positions[:, :2].min(axis=0) for p in parts], axis=0)
    digest = _files_digest([path])
    for part in parts:
        cent = part.positions[part.faces].mean(axis=1)[:, :2]
        cell = np.floor((cent - lo) / leaf_size).astype(np.int64)
        keys, inverse = np.unique(cell, axis=0, return_inverse=True)
        for k, key in enumerate(map(tuple, keys.tolist())):
            faces = part.faces[inverse.ravel() == k]
            used, remap = np.unique(faces, return_inverse=True)
            sub = Part(positions=part.positions[used], faces=remap.reshape(-1, 3), name=part.name,
                       uv=None if part.uv is None else part.uv[used], image=part.image,
                       colors=None if part.colors is None else part.colors[used], color=part.color)
            src.leaves.setdefault((int(key[0]), int(key[1])), []).append(sub)
    for key in src.leaves:
        src.fingerprints[key] = digest
    return src


def read_source(src: Path, src_crs: CRS | str | None = None, origin: tuple[float, float, float] | None = None,
                leaf_size: float = 100.0) -> MeshSource:
    src = Path(src)
    if not src.exists():
        raise InputError(f"{src}: not found")
    if src.is_dir():
        return read_export(src)
    if src.name == "metadata.xml":
        return read_export(src.parent)
    if src.suffix.lower() not in MESH_SUFFIXES:
        raise InputError(f"{src}: not a mesh ({', '.join(MESH_SUFFIXES)}) or an OBJ export folder")
    return read_single(src, src_crs, origin or (0.0, 0.0, 0.0), leaf_size)
