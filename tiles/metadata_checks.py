"""EXT_mesh_features / EXT_instance_features feature ids checked against the
EXT_structural_metadata property tables of a glb (counts, table sizes, class membership)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tiles.gltf_read import Glb
from tiles.issues import ERROR


def _feature_ids(glb: Glb, fid: dict[str, Any], attributes: dict[str, int]) -> np.ndarray | None:
    if "attribute" in fid:
        acc = attributes.get(f"_FEATURE_ID_{fid['attribute']}")
        return None if acc is None else np.asarray(glb.accessor(acc), dtype=np.float64).reshape(-1)
    return None


def metadata_issues(glb: Glb) -> list[tuple[str, str]]:
    """EXT_mesh_features / EXT_instance_features feature ids vs EXT_structural_metadata tables."""
    js = glb.json
    out: list[tuple[str, str]] = []
    meta = js.get("extensions", {}).get("EXT_structural_metadata", {})
    tables = meta.get("propertyTables", [])
    classes = meta.get("schema", {}).get("classes", {})
    for t_idx, table in enumerate(tables):
        if table.get("class") not in classes:
            out.append((ERROR, f"propertyTables[{t_idx}] class {table.get('class')!r} is not in the schema"))
        out.extend(_table_size_issues(glb, t_idx, table, classes.get(table.get("class"), {})))

    def check(where: str, fid: dict[str, Any], attributes: dict[str, int]) -> None:
        count = fid.get("featureCount")
        ids = _feature_ids(glb, fid, attributes)
        if ids is not None:
            if "attribute" in fid and f"_FEATURE_ID_{fid['attribute']}" not in attributes:
                out.append((ERROR, f"{where}: attribute _FEATURE_ID_{fid['attribute']} missing"))
            null = fid.get("nullFeatureId")
            real = ids[ids != null] if null is not None else ids
            distinct = len(np.unique(real))
            if count is not None and distinct > count:
                out.append((ERROR, f"{where}: {distinct} distinct feature ids > featureCount {count}"))
        else:
            real = np.zeros(0)
        p = fid.get("propertyTable")
        if p is None:
            return
        if not 0 <= p < len(tables):
            out.append((ERROR, f"{where}: propertyTable {p} does not exist ({len(tables)} tables)"))
            return
        rows = tables[p].get("count", 0)
        # several primitives/nodes may share one table, each using some of its rows
        if count is not None and count > rows:
            out.append((ERROR, f"{where}: featureCount {count} > propertyTables[{p}].count {rows}"))
        if len(real) and (real.max() >= rows or real.min() < 0):
            out.append((ERROR, f"{where}: feature id {int(real.max())} outside propertyTables[{p}] "
                               f"(count {rows})"))

    for m_idx, mesh in enumerate(js.get("meshes", [])):
        for p_idx, prim in enumerate(mesh.get("primitives", [])):
            feats = prim.get("extensions", {}).get("EXT_mesh_features", {})
            for f_idx, fid in enumerate(feats.get("featureIds", [])):
                where = f"meshes[{m_idx}].primitives[{p_idx}] featureIds[{f_idx}]"
                check(where, fid, prim.get("attributes", {}))
    for n_idx, node in enumerate(js.get("nodes", [])):
        ext = node.get("extensions", {})
        feats = ext.get("EXT_instance_features", {})
        attrs = ext.get("EXT_mesh_gpu_instancing", {}).get("attributes", {})
        for f_idx, fid in enumerate(feats.get("featureIds", [])):
            check(f"nodes[{n_idx}] instance featureIds[{f_idx}]", fid, attrs)
    return out


_COMPONENT_BYTES = {"INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "INT32": 4, "UINT32": 4,
                    "INT64": 8, "UINT64": 8, "FLOAT32": 4, "FLOAT64": 8}
_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


def _table_size_issues(glb: Glb, t_idx: int, table: dict[str, Any],
                       cls: dict[str, Any]) -> list[tuple[str, str]]:
    """Fixed-size property value buffers must hold ``count`` elements."""
    out = []
    count = table.get("count", 0)
    views = glb.json.get("bufferViews", [])
    props = cls.get("properties", {})
    for name, prop in table.get("properties", {}).items():
        definition = props.get(name)
        if definition is None:
            out.append((ERROR, f"propertyTables[{t_idx}].{name} is not a property of its class"))
            continue
        view = prop.get("values")
        if view is None or not 0 <= view < len(views):
            out.append((ERROR, f"propertyTables[{t_idx}].{name}: values bufferView {view} missing"))
            continue
        if definition.get("array") and "count" not in definition:
            continue  # variable-length: sizes come from arrayOffsets
        per = definition.get("count", 1) if definition.get("array") else 1
        kind = definition.get("type")
        if kind == "BOOLEAN":
            need = math.ceil(count * per / 8)
        elif kind in _TYPE_COMPONENTS and definition.get("componentType") in _COMPONENT_BYTES:
            need = count * per * _TYPE_COMPONENTS[kind] * _COMPONENT_BYTES[definition["componentType"]]
        else:
            continue
        have = views[view].get("byteLength", 0)
        if have < need:
            out.append((ERROR, f"propertyTables[{t_idx}].{name}: {have} bytes of values < {need} needed "
                               f"for count {count}"))
    return out
