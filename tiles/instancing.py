"""Instanced glb content: ``EXT_mesh_gpu_instancing`` + ``EXT_instance_features`` + metadata.

One glb holds one node per template (tree billboard, street lamp, ...). Each node carries

- its template mesh (positions/normals/COLOR_0, or TEXCOORD_0 + an embedded PNG texture),
- ``EXT_mesh_gpu_instancing`` attributes ``TRANSLATION`` (float VEC3), ``ROTATION`` (float VEC4
  unit quaternions x,y,z,w), ``SCALE`` (float VEC3) and ``_FEATURE_ID_0`` (float SCALAR),
- ``EXT_instance_features`` pointing ``_FEATURE_ID_0`` at property table 0,

and the glb has one ``EXT_structural_metadata`` property table shared by all nodes (row i =
feature id i). The node's ``translation`` is the content origin; instance translations are
relative to it (float32 precision stays sub-millimetre within a tile).

Inputs are ENU (x east, y north, z up); this module converts to glTF y-up with
``P = enu→gltf`` (x, y, z) → (x, z, −y): a rotation R in ENU becomes P R Pᵀ, a per-axis scale
(sx, sy, sz) becomes (sx, sz, sy). ``EXT_mesh_gpu_instancing`` is listed in
``extensionsRequired`` (without it a client would draw a single instance at the origin).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.frames import enu_to_gltf
from tiles.gltf import ELEMENT_ARRAY_BUFFER, FeatureTable, GlbBuilder
from tiles.gltf_read import quaternions_to_matrices, read_glb
from tiles.models import TemplateMesh
from tiles.volumes import box_corners

EXT_INSTANCING = "EXT_mesh_gpu_instancing"
EXT_INSTANCE_FEATURES = "EXT_instance_features"

# ENU → glTF y-up as a rotation matrix (det +1: winding is preserved)
P_ENU_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

LINEAR, LINEAR_MIPMAP_LINEAR, CLAMP_TO_EDGE = 9729, 9987, 33071


@dataclass
class InstanceGroup:
    """Instances of one template (ENU; translations relative to the content origin)."""

    template: TemplateMesh
    translations: np.ndarray  # (N,3) ENU metres
    rotations: np.ndarray  # (N,3,3) template ENU → content ENU rotation matrices
    scales: np.ndarray  # (N,3) scale along the template's x (east), y (north), z (up)
    feature_ids: np.ndarray  # (N,) int rows of the property table

    def __post_init__(self) -> None:
        n = len(self.translations)
        if self.rotations.shape != (n, 3, 3) or self.scales.shape != (n, 3) or len(self.feature_ids) != n:
            raise ValueError(f"instance group {self.template.name}: inconsistent array shapes")

    @property
    def count(self) -> int:
        return len(self.translations)


# ------------------------------------------------------------------------------------ rotations
def yaw_matrices(heading_true_deg: np.ndarray) -> np.ndarray:
    """(N,3,3) ENU rotations turning forward (+y, north) to each heading (deg clockwise from true N)."""
    h = np.radians(np.asarray(heading_true_deg, np.float64))
    c, s = np.cos(h), np.sin(h)
    m = np.zeros((len(h), 3, 3))
    m[:, 0, 0], m[:, 0, 1] = c, s
    m[:, 1, 0], m[:, 1, 1] = -s, c
    m[:, 2, 2] = 1.0
    return m


def enu_rotations(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    """(N,3,3) matrices whose columns are the local east, north, up unit vectors in ECEF."""
    lon, lat = np.radians(np.asarray(lon_deg, float)), np.radians(np.asarray(lat_deg, float))
    so, co, sa, ca = np.sin(lon), np.cos(lon), np.sin(lat), np.cos(lat)
    m = np.empty((len(lon), 3, 3))
    m[:, :, 0] = np.column_stack([-so, co, np.zeros_like(lon)])
    m[:, :, 1] = np.column_stack([-sa * co, -sa * so, ca])
    m[:, :, 2] = np.column_stack([ca * co, ca * so, sa])
    return m


def local_to_frame_rotations(frame_rotation: np.ndarray, lon_deg: np.ndarray, lat_deg: np.ndarray,
                             heading_true_deg: np.ndarray) -> np.ndarray:
    """Rotations from template ENU to a tile frame's ENU, keeping each instance plumb at its own point.

    ``frame_rotation`` is the tile frame's ENU→ECEF 3x3; the local up at an instance 2 km away
    differs from the frame's up by ~0.02°, which this accounts for exactly.
    """
    local = enu_rotations(lon_deg, lat_deg)
    return np.einsum("ji,njk,nkl->nil", frame_rotation, local, yaw_matrices(heading_true_deg))


def matrices_to_quaternions(m: np.ndarray) -> np.ndarray:
    """(N,3,3) proper rotations → (N,4) unit quaternions (x, y, z, w), w ≥ 0."""
    m = np.asarray(m, np.float64)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = np.stack([
        np.stack([m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1], 1 + tr], 1),
        np.stack([1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0],
                  m[:, 0, 2] + m[:, 2, 0], m[:, 2, 1] - m[:, 1, 2]], 1),
        np.stack([m[:, 0, 1] + m[:, 1, 0], 1 + m[:, 1, 1] - m[:, 0, 0] - m[:, 2, 2],
                  m[:, 1, 2] + m[:, 2, 1], m[:, 0, 2] - m[:, 2, 0]], 1),
        np.stack([m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                  1 + m[:, 2, 2] - m[:, 0, 0] - m[:, 1, 1], m[:, 1, 0] - m[:, 0, 1]], 1),
    ], axis=1)  # (N, 4 candidates, 4)
    diag = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], 1)
    best = np.argmax(diag, axis=1)  # numerically safest candidate (Shepperd)
    q = cand[np.arange(len(m)), best]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 3] < 0] *= -1
    return q


def placed_bounds(lo: np.ndarray, hi: np.ndarray, translations: np.ndarray | None,
                  rotations: np.ndarray | None, scales: np.ndarray | None) -> np.ndarray:
    """The corners of a template's bounds [lo, hi] placed at every instance: (N*8, 3), each
    corner scaled, rotated (unit quaternions x, y, z, w) and translated as
    ``EXT_mesh_gpu_instancing`` does. With no instance attribute at all, the 8 corners."""
    corners = box_corners(np.asarray(lo, np.float64), np.asarray(hi, np.float64))
    given = [a for a in (translations, rotations, scales) if a is not None]
    if not given:
        return corners
    n = len(given[0])
    t = np.zeros((n, 3)) if translations is None else np.asarray(translations, np.float64)
    r = (np.broadcast_to(np.eye(3), (n, 3, 3)) if rotations is None
         else quaternions_to_matrices(rotations))
    s = np.ones((n, 3)) if scales is None else np.asarray(scales, np.float64)
    placed = np.einsum("nij,nkj->nki", r, corners[None, :, :] * s[:, None, :])  # (n, 8, 3)
    return (placed + t[:, None, :]).reshape(-1, 3)


def enu_rotations_to_gltf(rot_enu: np.ndarray) -> np.ndarray:
    """P R Pᵀ for each (N,3,3) ENU rotation."""
    return np.einsum("ij,njk,lk->nil", P_ENU_TO_GLTF, rot_enu, P_ENU_TO_GLTF)


# ------------------------------------------------------------------------------------ encoding
def _template_primitive(builder: GlbBuilder, t: TemplateMesh) -> dict[str, Any]:
    pos = enu_to_gltf(t.positions.astype(np.float64)).astype(np.float32)
    nrm = enu_to_gltf(t.normals.astype(np.float64)).astype(np.float32)
    attributes = {
        "POSITION": builder.add_accessor(pos, minmax=True),
        "NORMAL": builder.add_accessor(nrm),
    }
    material: dict[str, Any] = {
        "name": t.name,
        "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0,
                                 "roughnessFactor": 0.9},
    }
    if t.texture_png is not None and t.texcoords is not None:
        attributes["TEXCOORD_0"] = builder.add_accessor(t.texcoords.astype(np.float32))
        image_view = builder.add_view(t.texture_png)
        g = builder.gltf
        g.setdefault("images", []).append({"bufferView": image_view, "mimeType": "image/png"})
        g.setdefault("samplers", []).append({"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR,
                                             "wrapS": CLAMP_TO_EDGE, "wrapT": CLAMP_TO_EDGE})
        g.setdefault("textures", []).append(
            {"sampler": len(g["samplers"]) - 1, "source": len(g["images"]) - 1})
        material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": len(g["textures"]) - 1}
    else:
        colors = np.clip(np.rint(t.colors * 255.0), 0, 255).astype(np.uint8)
        attributes["COLOR_0"] = builder.add_accessor(colors, normalized=True)
    if t.alpha_cutoff is not None:
        material["alphaMode"] = "MASK"
        material["alphaCutoff"] = float(t.alpha_cutoff)
    if t.double_sided:
        material["doubleSided"] = True
    builder.gltf.setdefault("materials", []).append(material)
    n_vertices = len(t.positions)
    idx_dtype = np.uint16 if n_vertices < 65535 else np.uint32
    indices = builder.add_accessor(t.indices.astype(idx_dtype), target=ELEMENT_ARRAY_BUFFER)
    return {"attributes": attributes, "indices": indices, "mode": 4,
            "material": len(builder.gltf["materials"]) - 1}


def encode_instanced_glb(groups: Sequence[InstanceGroup], table: FeatureTable,
                         origin_enu: Sequence[float] = (0.0, 0.0, 0.0)) -> bytes:
    """Instanced glb (see module docstring). Feature ids must index rows of ``table``."""
    groups = [g for g in groups if g.count]
    if not groups:
        raise ValueError("no instances to encode")
    builder = GlbBuilder()
    table_index = builder.add_property_table(table)
    origin_gltf = enu_to_gltf(np.asarray(origin_enu, np.float64).reshape(1, 3))[0]
    nodes, meshes = [], []
    for g in groups:
        fids = np.asarray(g.feature_ids)
        if fids.min() < 0 or fids.max() >= table.count:
            raise ValueError(f"{g.template.name}: feature ids outside [0, {table.count})")
        meshes.append({"name": g.template.name, "primitives": [_template_primitive(builder, g.template)]})
        t_gltf = enu_to_gltf(np.asarray(g.translations, np.float64)).astype(np.float32)
        q = matrices_to_quaternions(enu_rotations_to_gltf(g.rotations)).astype(np.float32)
        s = np.asarray(g.scales, np.float64)[:, [0, 2, 1]].astype(np.float32)
        attrs = {
            "TRANSLATION": builder.add_accessor(t_gltf, target=None, minmax=True),
            "ROTATION": builder.add_accessor(q, target=None),
            "SCALE": builder.add_accessor(s, target=None),
            "_FEATURE_ID_0": builder.add_accessor(fids.astype(np.float32), target=None),
        }
        nodes.append({
            "name": g.template.name,
            "mesh": len(meshes) - 1,
            "translation": [float(v) for v in origin_gltf],
            "extensions": {
                EXT_INSTANCING: {"attributes": attrs},
                EXT_INSTANCE_FEATURES: {"featureIds": [
                    {"featureCount": int(len(np.unique(fids))), "attribute": 0, "propertyTable": table_index}
                ]},
            },
        })
    builder.use_extension(EXT_INSTANCING)
    builder.use_extension(EXT_INSTANCE_FEATURES)
    builder.gltf.update({"scene": 0, "scenes": [{"nodes": list(range(len(nodes)))}], "nodes": nodes,
                         "meshes": meshes, "extensionsRequired": [EXT_INSTANCING]})
    return builder.to_bytes()


@dataclass
class DecodedInstances:
    """What a client sees: per node, template name and instances in content ENU (absolute)."""

    template: str
    translations_enu: np.ndarray  # (N,3) including the node translation
    rotations_enu: np.ndarray  # (N,3,3)
    scales: np.ndarray  # (N,3) template x, y, z
    feature_ids: np.ndarray  # (N,) int


def decode_instanced_glb(data: bytes) -> tuple[list[DecodedInstances], dict[str, list[Any]]]:
    """Read back an instanced glb (for tests and tooling): nodes' instances + property table 0."""
    glb = read_glb(data)
    out = []
    for node in glb.json["nodes"]:
        ext = node.get("extensions", {}).get(EXT_INSTANCING)
        if ext is None:
            continue
        a = ext["attributes"]
        origin = np.asarray(node.get("translation", [0, 0, 0]), np.float64)
        t = glb.accessor(a["TRANSLATION"]).astype(np.float64) + origin
        q = glb.accessor(a["ROTATION"]).astype(np.float64)
        s = glb.accessor(a["SCALE"]).astype(np.float64)
        rot_gltf = quaternions_to_matrices(q)
        rot_enu = np.einsum("ji,njk,kl->nil", P_ENU_TO_GLTF, rot_gltf, P_ENU_TO_GLTF)
        name = glb.json["meshes"][node["mesh"]].get("name", "")
        out.append(DecodedInstances(
            name,
            np.column_stack([t[:, 0], -t[:, 2], t[:, 1]]),
            rot_enu,
            s[:, [0, 2, 1]],
            glb.accessor(a["_FEATURE_ID_0"]).astype(np.int64),
        ))
    return out, glb.property_table(0)


__all__ = [
    "DecodedInstances", "InstanceGroup", "decode_instanced_glb", "encode_instanced_glb",
    "enu_rotations", "enu_rotations_to_gltf", "local_to_frame_rotations", "matrices_to_quaternions",
    "quaternions_to_matrices", "yaw_matrices",
]
