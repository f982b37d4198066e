"""FastAPI writes OpenAPI 3.1; OGC API – Features (and GDAL/QGIS) expect 3.0. Convert.

Rewrites the JSON-Schema-2020 constructs 3.0 lacks: ``type: null`` alternatives become
``nullable``, ``const`` becomes a one-value ``enum``, ``examples`` becomes ``example``, numeric
``exclusiveMinimum/Maximum`` become the boolean form, and type lists become ``anyOf``.
"""

from __future__ import annotations

from typing import Any

OPENAPI_VERSION = "3.0.3"


def to_openapi30(doc: dict[str, Any]) -> dict[str, Any]:
    out = _convert(doc)
    out["openapi"] = OPENAPI_VERSION
    out.pop("jsonSchemaDialect", None)
    out.pop("webhooks", None)
    return out


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _convert(v) for k, v in node.items()}
    for key in ("anyOf", "oneOf"):
        alts = node.get(key)
        if isinstance(alts, list) and any(_is_null(a) for a in alts):
            rest = [a for a in alts if not _is_null(a)]
            node["nullable"] = True
            if len(rest) == 1:
                del node[key]
                only = rest[0]
                if "$ref" in only:
                    node["allOf"] = [only]
                else:
                    for k, v in only.items():
                        node.setdefault(k, v)
            else:
                node[key] = rest
    t = node.get("type")
    if isinstance(t, list):
        types = [x for x in t if x != "null"]
        if len(types) != len(t):
            node["nullable"] = True
        if len(types) == 1:
            node["type"] = types[0]
        else:
            del node["type"]
            node["anyOf"] = [{"type": x} for x in types]
    elif t == "null":
        del node["type"]
        node["nullable"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "examples" in node and isinstance(node["examples"], list) and "schema" not in node:
        ex = node.pop("examples")
        if ex:
            node.setdefault("example", ex[0])
    for key, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        v = node.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            node[flag] = v
            node[key] = True
    if "$ref" in node and len(node) > 1 and not any(k in node for k in ("in", "name")):
        ref = node.pop("$ref")
        node["allOf"] = [{"$ref": ref}]
    node.pop("contentMediaType", None)
    return node


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null" and len(schema) == 1
