"""CityJSON reading: ``.city.json`` (CityJSON 1.1 / 2.0) and CityJSON Text Sequences
(``.city.jsonl``: a first line holding the CityJSON metadata object, then CityJSONFeature lines).

Pure reading, no meshing: the result is a :class:`CityModel` of :class:`CityBuilding` objects
(``Building`` and ``BuildingPart`` that carry geometry), each with planar 3D surfaces (outer ring
+ holes, real coordinates after ``transform``), the surface's semantic type (``RoofSurface``,
``WallSurface``, ``GroundSurface``, ...) and the object's attributes.

- Geometry types: ``Solid``, ``MultiSolid``/``CompositeSolid`` (every shell),
  ``MultiSurface``/``CompositeSurface``. Other types (``GeometryInstance``, ``MultiPoint``, ...)
  are skipped with a problem noted.
- LOD0 (2D footprints) is never a body: objects with nothing else are reported; a Building
  whose BuildingParts carry 3D geometry is drawn by its parts, which inherit its attributes.
- LOD choice (``lod``): ``None`` → the highest LOD of each object; ``"2"`` → the highest LOD
  2.x (then anything lower if the object has no LOD 2); ``"1.2"`` → exactly that LOD when present,
  else the closest lower one.
- CRS: ``metadata.referenceSystem`` (an OGC URL ``https://www.opengis.net/def/crs/EPSG/0/7415``
  or URN). A compound CRS gives the horizontal part; its vertical datum says the heights are
  orthometric (e.g. NAP): they need the geoid. A 3D geographic CRS (EPSG:4979, 4937, ...) means
  ellipsoidal heights. A 2D CRS alone: heights are taken as orthometric (noted).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS
from pyproj.exceptions import CRSError

from core.errors import InputError

BUILDING_TYPES = ("Building", "BuildingPart")
_SURFACE_TYPES = ("MultiSurface", "CompositeSurface")
_SOLID_TYPES = ("Solid",)
_MULTISOLID_TYPES = ("MultiSolid", "CompositeSolid")


class CityJSONError(InputError):
    """The file is not CityJSON we can read; the message names the file (and object)."""


@dataclass
class Surface:
    """One planar polygon: ``rings[0]`` the outer ring, then holes; each (n,3) without repeating
    the first vertex. ``kind`` is the semantic surface type ('' when none)."""

    rings: list[np.ndarray]
    kind: str = ""

    @property
    def exterior(self) -> np.ndarray:
        return self.rings[0]


@dataclass
class CityBuilding:
    """A Building or BuildingPart with geometry at the chosen LOD."""

    id: str
    type: str
    lod: str
    surfaces: list[Surface]
    attributes: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    lods: tuple[str, ...] = ()

    def of_kind(self, kind: str) -> list[Surface]:
        return [s for s in self.surfaces if s.kind == kind]

    @property
    def z_range(self) -> tuple[float, float]:
        z = np.concatenate([r[:, 2] for s in self.surfaces for r in s.rings])
        return float(z.min()), float(z.max())


@dataclass
class CityModel:
    path: Path
    version: str
    crs: CRS | None  # horizontal CRS (None when the file declares none)
    heights: str  # "orthometric" | "ellipsoidal"
    vertical_datum: str | None
    buildings: list[CityBuilding]
    objects: int  # city objects read (any type)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (object id, message)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ CRS
_EPSG_RE = re.compile(r"(?:EPSG/\d+/|EPSG:+|EPSG::)(\d+)", re.IGNORECASE)


def parse_reference_system(path: Path, text: str | None) -> tuple[CRS | None, str, str | None, list[str]]:
    """(horizontal CRS, heights kind, vertical datum name, notes) of ``metadata.referenceSystem``."""
    notes: list[str] = []
    if not text:
        return None, "orthometric", None, ["no metadata.referenceSystem: heights taken as orthometric"]
    m = _EPSG_RE.search(text)
    try:
        crs = CRS.from_epsg(int(m.group(1))) if m else CRS.from_user_input(text)
    except CRSError as exc:
        raise CityJSONError(f"{path}: metadata.referenceSystem {text!r} is not a CRS PROJ knows: {exc}",
                            hint="give an EPSG URL such as https://www.opengis.net/def/crs/EPSG/0/7415") from exc
    if crs.is_compound:
        horiz = next((c for c in crs.sub_crs_list if not c.is_vertical), None)
        vert = next((c for c in crs.sub_crs_list if c.is_vertical), None)
        if horiz is None:
            raise CityJSONError(f"{path}: compound CRS {crs.name} has no horizontal part")
        datum = vert.datum.name if vert is not None and vert.datum is not None else None
        return horiz, "orthometric", datum, notes
    if crs.is_geocentric:
        raise CityJSONError(f"{path}: geocentric CRS {crs.name} is not supported for CityJSON",
                            hint="deliver in a projected (+ vertical) CRS")
    if crs.is_geographic and len(crs.axis_info) == 3:
        return crs, "ellipsoidal", None, notes
    notes.append(f"referenceSystem {crs.name} has no vertical datum: heights taken as orthometric")
    return crs, "orthometric", None, notes


# ------------------------------------------------------------------------------------ LOD
def _lod_key(lod: str) -> tuple[int, int]:
    major, _, minor = str(lod).partition(".")
    try:
        return int(major), int(minor or -1)
    except ValueError:
        return -1, -1


def choose_lod(available: list[str], wanted: str | None) -> str | None:
    """The LOD to keep among ``available`` (module docstring rule)."""
    if not available:
        return None
    ordered = sorted(set(available), key=_lod_key)
    if wanted is None:
        return ordered[-1]
    w = _lod_key(str(wanted))
    if "." not in str(wanted):  # "2": the best 2.x, else the best lower
        same = [x for x in ordered if _lod_key(x)[0] == w[0]]
        if same:
            return same[-1]
        lower = [x for x in ordered if _lod_key(x)[0] < w[0]]
        return lower[-1] if lower else None
    lower = [x for x in ordered if _lod_key(x) <= w]
    return lower[-1] if lower else None


# ------------------------------------------------------------------------------------ geometry
def _ring(verts: np.ndarray, idx: list[int]) -> np.ndarray:
    r = verts[np.asarray(idx, dtype=np.int64)]
    if len(r) > 1 and np.array_equal(r[0], r[-1]):
        r = r[:-1]
    return r


def _surfaces(geom: dict[str, Any], verts: np.ndarray) -> Iterator[Surface]:
    gtype = geom.get("type")
    bounds = geom.get("boundaries") or []
    sem = geom.get("semantics") or {}
    sem_surfaces = sem.get("surfaces") or []
    values = sem.get("values")

    def kind_of(v: Any) -> str:
        if isinstance(v, int) and 0 <= v < len(sem_surfaces):
            return str(sem_surfaces[v].get("type", ""))
        return ""

    if gtype in _SURFACE_TYPES:
        shells, vals = [bounds], [values]
    elif gtype in _SOLID_TYPES:
        shells, vals = bounds, (values or [None] * len(bounds))
    elif gtype in _MULTISOLID_TYPES:
        shells, vals = [], []
        for k, solid in enumerate(bounds):
            sv = values[k] if values else None
            for j, shell in enumerate(solid):
                shells.append(shell)
                vals.append(sv[j] if sv else None)
    else:
        raise ValueError(f"geometry type {gtype!r} not supported")
    for shell, sv in zip(shells, vals, strict=False):
        for i, surface in enumerate(shell):
            rings = [_ring(verts, r) for r in surface if len(r) >= 3]
            if not rings:
                continue
            yield Surface(rings, kind_of(sv[i] if isinstance(sv, list) and i < len(sv) else None))


def _is_3d_lod(lod: Any) -> bool:
    return lod is not None and _lod_key(str(lod))[0] >= 1


def _objects_to_buildings(path: Path, objects: dict[str, Any], verts: np.ndarray, lod: str | None,
                          out: list[CityBuilding], problems: list[tuple[str, str]]) -> None:
    """Buildings and parts with 3D geometry (LOD ≥ 1; LOD0 footprints are not bodies). A Building
    whose parts carry the geometry is drawn by its parts, which inherit its attributes."""
    for oid, obj in objects.items():
        otype = obj.get("type", "")
        if otype not in BUILDING_TYPES:
            continue
        geoms = [g for g in obj.get("geometry") or [] if isinstance(g, dict) and _is_3d_lod(g.get("lod"))]
        if not geoms:
            children = [objects.get(c) or {} for c in obj.get("children") or []]
            if any(_is_3d_lod(g.get("lod")) for c in children for g in c.get("geometry") or []
                   if isinstance(g, dict)):
                continue  # a Building drawn by its parts
            has_lod0 = any(isinstance(g, dict) and g.get("lod") is not None for g in obj.get("geometry") or [])
            problems.append((oid, f"{otype} has no geometry" + (" in 3D (LOD0 footprint only)" if has_lod0
                                                                    else "")))
            continue
        lods = [str(g.get("lod")) for g in geoms]
        chosen = choose_lod(lods, lod)
        if chosen is None:
            problems.append((oid, f"no geometry at LOD {lod} (has {', '.join(sorted(set(lods)))})"))
            continue
        surfaces: list[Surface] = []
        try:
            for g in geoms:
                if str(g.get("lod")) == chosen:
                    surfaces.extend(_surfaces(g, verts))
        except (ValueError, IndexError, TypeError) as exc:
            problems.append((oid, f"LOD {chosen} geometry unreadable: {exc}"))
            continue
        if not surfaces:
            problems.append((oid, f"LOD {chosen} geometry has no surface"))
            continue
        parents = obj.get("parents") or []
        parent = str(parents[0]) if parents else None
        attrs = dict((objects.get(parent) or {}).get("attributes") or {}) if parent else {}
        attrs.update(obj.get("attributes") or {})
        out.append(CityBuilding(str(oid), otype, chosen, surfaces, attrs, parent,
                                tuple(sorted(set(lods), key=_lod_key))))


def _vertices(path: Path, raw: Any, transform: dict[str, Any] | None, where: str) -> np.ndarray:
    try:
        v = np.asarray(raw if raw else np.zeros((0, 3)), dtype=np.float64).reshape(-1, 3)
    except (ValueError, TypeError) as exc:
        raise CityJSONError(f"{path}: {where}: vertices are not [x, y, z] triples: {exc}") from exc
    if transform:
        v = v * np.asarray(transform.get("scale", [1, 1, 1]), float) + np.asarray(
            transform.get("translate", [0, 0, 0]), float)
    if not np.isfinite(v).all():
        raise CityJSONError(f"{path}: {where}: non-finite vertex coordinates")
    return v


def _check_header(path: Path, doc: Any, kind: str = "CityJSON") -> None:
    if not isinstance(doc, dict) or doc.get("type") != kind:
        got = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise CityJSONError(f"{path}: not a {kind} object (type {got!r})",
                            hint="give a .city.json file or a .city.jsonl CityJSON Text Sequence")
    version = str(doc.get("version", ""))
    if kind == "CityJSON" and not version.startswith(("1.1", "2.0", "1.0")):
        raise CityJSONError(f"{path}: CityJSON version {version!r} not supported (1.1 or 2.0)",
                            hint="upgrade it with `cjio FILE upgrade save OUT`")


def is_cityjson(path: Path | str) -> bool:
    name = Path(path).name.lower()
    return name.endswith((".city.json", ".city.jsonl", ".cityjson", ".jsonl"))


def read_cityjson(path: Path | str, lod: str | None = None) -> CityModel:
    """Read a CityJSON file or CityJSON Text Sequence into buildings with surfaces at ``lod``."""
    path = Path(path)
    if not path.is_file():
        raise CityJSONError(f"{path}: file not found")
    lod = None if lod in (None, "") else str(lod)
    buildings: list[CityBuilding] = []
    problems: list[tuple[str, str]] = []
    objects = 0
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CityJSONError(f"{path}: not UTF-8 ({exc}); CityJSON is UTF-8 by specification") from exc
    if path.name.lower().endswith(".jsonl"):
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            raise CityJSONError(f"{path}: empty CityJSON Text Sequence")
        try:
            head = json.loads(lines[0])
        except json.JSONDecodeError as exc:
            raise CityJSONError(f"{path}: line 1 is not JSON: {exc}") from exc
        _check_header(path, head)
        transform = head.get("transform")
        meta = head.get("metadata") or {}
        version = str(head.get("version"))
        for n, line in enumerate(lines[1:], start=2):
            try:
                feat = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append((f"line {n}", f"not JSON: {exc}"))
                continue
            if not isinstance(feat, dict) or feat.get("type") != "CityJSONFeature":
                problems.append((f"line {n}", "not a CityJSONFeature"))
                continue
            verts = _vertices(path, feat.get("vertices"), transform, f"line {n}")
            objs = feat.get("CityObjects") or {}
            objects += len(objs)
            _objects_to_buildings(path, objs, verts, lod, buildings, problems)
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CityJSONError(f"{path}: not JSON: {exc}") from exc
        _check_header(path, doc)
        version = str(doc.get("version"))
        meta = doc.get("metadata") or {}
        verts = _vertices(path, doc.get("vertices"), doc.get("transform"), "vertices")
        objs = doc.get("CityObjects") or {}
        objects = len(objs)
        _objects_to_buildings(path, objs, verts, lod, buildings, problems)
    crs, heights, datum, notes = parse_reference_system(path, meta.get("referenceSystem"))
    return CityModel(path, version, crs, heights, datum, buildings, objects, problems, notes)
