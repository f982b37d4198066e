"""The one reason-code table of the delivery layer: code → meaning → what to do.

Every rejection (feature not written) and repair (feature written after a documented change) in a
tiles report or a load report uses a code of :data:`REASONS`; ``docs/delivery.md`` lists exactly
these codes (a test checks it). ``hint`` texts name real command-line options only (a test checks
every ``--option`` they mention exists on the commands that read deliveries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Reason:
    code: str
    kind: Literal["reject", "repair"]
    meaning: str
    hint: str


_TABLE: tuple[Reason, ...] = (
    # ---------------------------------------------------------------- rejections: ids
    Reason("missing_id", "reject", "the id field is empty",
           "fill the id, or choose the id field with --id-field / the mapping's fields.id"),
    Reason("duplicate", "reject",
           "same geometry (to 1 mm) and same attributes as an earlier feature; the earlier id is kept",
           "delete the copy from the delivery"),
    Reason("duplicate_id", "reject", "id already used by an earlier, different feature of the same delivery",
           "give each feature its own id"),
    # ---------------------------------------------------------------- rejections: geometry
    Reason("empty_geometry", "reject", "the feature has no geometry", "draw the feature or delete it"),
    Reason("wrong_geometry_type", "reject", "geometry type not accepted by this layer",
           "deliver polygons for areas, lines for roads, points for point features"),
    Reason("invalid_coordinate", "reject", "a vertex is NaN or infinite", "fix the vertex in the source"),
    Reason("out_of_domain", "reject",
           "a vertex lies outside the valid area of the layer's CRS (latitude beyond ±90°, longitude "
           "beyond ±180°, or projected coordinates that do not map to the Earth)",
           "check the file's CRS; pass --src-crs when the file declares none or the wrong one"),
    Reason("swapped_axes", "reject",
           "geographic coordinates in (lat, lon) order: the latitude is out of range but the "
           "longitude would be a valid latitude",
           "write coordinates as (lon, lat) (x = longitude), as GeoJSON and EPSG:4326 files use"),
    Reason("self_intersection", "reject",
           "self-intersecting polygon whose make_valid repair leaves no area", "redraw the outline"),
    Reason("zero_area", "reject", "polygon area below 0.5 m² (collapsed or sliver footprint)",
           "redraw the outline or delete the feature"),
    Reason("zero_length", "reject", "line shorter than 0.01 m", "redraw the line or delete it"),
    Reason("outside_boundary", "reject",
           "no part of the feature lies within 1 m of the district boundary",
           "check the file's CRS (--src-crs) or the boundary (--boundary)"),
    Reason("covered", "reject",
           "the feature is entirely covered by a higher-ranked feature of the same layer "
           "(a road under a wider road), so nothing of it would be drawn",
           "delete the covered feature or correct its class/width"),
    Reason("unowned", "reject",
           "a partitioned build read the feature in no partition (its geometry does not reach the "
           "partition its reference point lies in, e.g. a road looping around a partition), "
           "so no tile would draw it",
           "build the layer in one piece with --partition-level 0"),
    # ---------------------------------------------------------------- rejections: values
    Reason("missing_value", "reject", "a required field is empty", "fill the field"),
    Reason("unparsable_value", "reject", "a value that cannot be read as the field's type (number, time)",
           "write numbers as 12.5 (units m/米/层 and decimal commas are accepted), times as ISO-8601"),
    Reason("absurd_value", "reject", "a number outside the field's accepted range", "fix the value"),
    Reason("missing_height", "reject", "no height and no floors",
           "fill height or floors, or pass --missing-height default (tiles buildings)"),
    Reason("absurd_height", "reject",
           "height ≤ 0 m or > 500 m, floors < 0 or > 120 (trees > 60 m, furniture > 50 m)",
           "fix the value (heights in metres, floors as a count; 3.5 floors is accepted)"),
    Reason("unknown_value", "reject", "a value outside the field's accepted list (category, type, status)",
           "use a listed value, or translate delivered values with the mapping's values: table"),
    Reason("unknown_reference", "reject", "refers to an id that is not loaded (community, worker, device)",
           "load the referenced layer first"),
    Reason("unknown_type", "reject", "a furniture type with no template",
           "use a type of the furniture catalogue, or translate delivered types with the mapping's "
           "values: type: table (choose the type field with the mapping's fields.type)"),
    Reason("outside_dem", "reject", "no DEM height at the feature (outside the DEM or nodata)",
           "give a DEM covering the feature (--dem)"),
    Reason("inconsistent_lifecycle", "reject",
           "event status and status timestamps do not form a legal lifecycle", "fix the timestamps"),
    # ---------------------------------------------------------------- repairs
    Reason("make_valid", "repair", "invalid polygon repaired with make_valid (every polygonal part kept)",
           "none needed; redraw the outline for an exact shape"),
    Reason("parsed_value", "repair", "a number written as text ('12,5', '12 m', '6层') read leniently",
           "none needed"),
    Reason("reprojected", "repair", "the file's CRS differs from the delivery CRS; reprojected", "none needed"),
    Reason("single_part", "repair", "a multi-geometry with one part read as that part", "none needed"),
    Reason("dropped_z", "repair", "Z or M values dropped (heights come from the height fields and the DEM)",
           "none needed"),
    Reason("height_from_floors", "repair", "no height: floors × --floor-height", "deliver the height"),
    Reason("default_height", "repair", "no height and no floors: --default-height used", "deliver the height"),
    Reason("roof_type_inferred", "repair", "unknown roof type: inferred from size and use",
           "use flat, gable or hip (or map delivered values in the mapping)"),
    Reason("base_outside_dem", "repair", "the DEM has no data under the feature: base set to the median ground",
           "give a DEM covering the district (--dem)"),
    Reason("crown_from_height", "repair", "no or absurd crown diameter: 0.6 × height (1.5–15 m)",
           "deliver the crown diameter"),
    Reason("level_from_dem", "repair", "no water level: the lowest shore ground", "deliver the water level"),
    Reason("unknown_class", "repair", "unknown road class: drawn as the default class",
           "use a listed class, or translate delivered classes with the mapping's values: table"),
    Reason("default_width", "repair", "no or absurd road width: the class's default width", "deliver the width"),
    Reason("default_deck_height", "repair", "bridge without deck height: the default deck height",
           "deliver deck_height"),
    Reason("default_heading", "repair", "no heading: facing grid north (0°)", "deliver the heading"),
    Reason("worker_from_device", "repair", "a GPS fix without worker id: worker taken from its device",
           "none needed"),
)

#: code → :class:`Reason`
REASONS: dict[str, Reason] = {r.code: r for r in _TABLE}

REJECT_CODES: dict[str, str] = {r.code: r.meaning for r in _TABLE if r.kind == "reject"}
REPAIR_CODES: dict[str, str] = {r.code: r.meaning for r in _TABLE if r.kind == "repair"}


def reason(code: str) -> Reason:
    """The table entry of ``code`` (KeyError for an undocumented code: every code is in the table)."""
    return REASONS[code]


def markdown_table() -> str:
    """The reason table as Markdown (the section of docs/delivery.md between its markers)."""
    lines = ["| code | kind | meaning | what to do |", "|---|---|---|---|"]
    for r in _TABLE:
        lines.append(f"| `{r.code}` | {r.kind} | {r.meaning} | {r.hint} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - regenerates the docs/delivery.md section
    import sys

    sys.stdout.write(markdown_table())
