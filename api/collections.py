"""The OGC API – Features collections: one registry entry per layer.

Adding a layer = adding one :class:`Collection` to :data:`COLLECTIONS`. Only the listed
properties are ever selected, filtered or sorted on; SQL is built from these names with
SQLAlchemy Core (quoted identifiers, bound values), never by string concatenation of input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from gis import policy
from gis.policy import Permission

PropType = Literal["string", "integer", "number", "boolean", "datetime", "date", "array"]


@dataclass(frozen=True)
class Prop:
    name: str
    type: PropType = "string"
    description: str = ""
    #: permission needed to see this property (None: everyone who may read the collection)
    permission: Permission | None = None


@dataclass(frozen=True)
class Collection:
    id: str
    title: str
    description: str
    table: str  # [schema.]table or view
    properties: tuple[Prop, ...]
    id_column: str = "id"
    id_type: Literal["string", "integer"] = "string"
    geometry_column: str = "geom"
    geometry_type: str = "Geometry"
    #: instant column, or start of the interval when ``datetime_end`` is set
    datetime: str | None = None
    datetime_end: str | None = None
    read_permission: Permission = Permission.READ
    #: view/table read instead of ``table`` by privileged users (every such read is audited)
    privileged_table: str | None = None
    default_sort: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    def prop(self, name: str) -> Prop | None:
        for p in self.properties:
            if p.name == name:
                return p
        return None

    def visible_properties(self, role: str | None) -> tuple[Prop, ...]:
        return tuple(p for p in self.properties if p.permission is None or policy.allows(role, p.permission))


S, INT, N, T, D = "string", "integer", "number", "datetime", "date"

_POP_PROPS = (
    Prop("name", S, "name of the area or building"),
    Prop("total", INT, "residents (NULL if fewer than 5, unless privileged)"),
    Prop("registered", INT, "registered residents (户籍)"),
    Prop("floating", INT, "floating population (流动)"),
    Prop("age_60_plus", INT, "aged 60 or more"),
    Prop("age_80_plus", INT, "aged 80 or more"),
    Prop("children_under_14", INT, "children under 14"),
    Prop("special_care", INT, "people needing special care"),
    Prop("suppressed", "array", "counts withheld because they are below 5"),
)


def _population(level: str, key: str, title: str) -> Collection:
    return Collection(
        id=f"population_by_{level}", title=title,
        description=f"Residents per {level}; counts below 5 are suppressed except for privileged users "
                    "(whose reads are audited).",
        table=f"population_by_{level}", id_column=key, geometry_type="MultiPolygon",
        properties=_POP_PROPS, read_permission=Permission.READ_POPULATION,
        privileged_table=f"restricted.population_by_{level}_full", default_sort=(key,),
    )


COLLECTIONS: Final[dict[str, Collection]] = {c.id: c for c in (
    Collection(
        id="buildings", title="Buildings",
        description="Building footprints; ids equal the feature ids in the 3D tiles (B000123).",
        table="buildings", geometry_type="MultiPolygon", default_sort=("id",),
        properties=(
            Prop("name", S), Prop("floors", INT), Prop("height", N, "metres above ground"),
            Prop("use", S), Prop("roof_type", S), Prop("compound", S),
            Prop("community_id", S), Prop("grid_id", S), Prop("roof_height_m", N),
        ),
    ),
    Collection(
        id="events", title="Events (cases)",
        description="Reported cases with their lifecycle timestamps.",
        table="events", geometry_type="Point", datetime="reported_at", default_sort=("id",),
        properties=(
            Prop("category", S), Prop("priority", S), Prop("source", S), Prop("description", S),
            Prop("status", S), Prop("worker_id", S), Prop("building_id", S), Prop("grid_id", S),
            Prop("community_id", S), Prop("reported_at", T), Prop("accepted_at", T),
            Prop("dispatched_at", T), Prop("en_route_at", T), Prop("on_scene_at", T),
            Prop("handled_at", T), Prop("verified_at", T),
            Prop("closed_at", T), Prop("rejected_at", T), Prop("deadline_at", T),
            Prop("reopened_count", INT), Prop("updated_at", T),
        ),
    ),
    Collection(
        id="cameras", title="Cameras",
        description="Street and high-altitude cameras with their view parameters and stream URL.",
        table="cameras", geometry_type="Point", default_sort=("id",),
        properties=(
            Prop("name", S), Prop("kind", S), Prop("mount_height", N), Prop("heading", N),
            Prop("pitch", N), Prop("hfov", N), Prop("range_m", N),
            Prop("stream_url", S, "only for admin/operator", permission=Permission.READ_STAFF),
            Prop("status", S), Prop("status_changed_at", T),
        ),
    ),
    Collection(
        id="grid_cells", title="Management grid cells",
        description="Grid cells (网格) with their responsible staff.",
        table="grid_cells", geometry_type="MultiPolygon", default_sort=("id",),
        properties=(
            Prop("name", S), Prop("community_id", S),
            Prop("staff_id", S, "only for admin/operator", permission=Permission.READ_STAFF),
            Prop("staff_name", S, "only for admin/operator", permission=Permission.READ_STAFF),
            Prop("staff_phone", S, "only for admin/operator", permission=Permission.READ_PATROLS),
        ),
    ),
    Collection(
        id="communities", title="Communities", description="Communities (社区).",
        table="communities", geometry_type="MultiPolygon", default_sort=("id",),
        properties=(Prop("name", S),),
    ),
    Collection(
        id="checkpoints", title="Patrol checkpoints", description="Check-in points of patrols.",
        table="checkpoints", geometry_type="Point", default_sort=("id",),
        properties=(Prop("name", S), Prop("grid_id", S), Prop("radius_m", N)),
    ),
    Collection(
        id="geofences", title="Geofences", description="No-parking zones and patrol areas.",
        table="geofences", geometry_type="MultiPolygon", default_sort=("id",),
        properties=(Prop("name", S), Prop("kind", S), Prop("worker_id", S), Prop("max_dwell_min", N)),
    ),
    Collection(
        id="facilities", title="Service facilities",
        description="Community service stations and terminals, elderly care, clinics, schools, police posts, "
                    "convenience stores (kind: see facility_kind); walking access: /analytics/access.",
        table="facilities", geometry_type="Point", default_sort=("id",),
        properties=(Prop("kind", S), Prop("name", S), Prop("community_id", S), Prop("building_id", S)),
    ),
    Collection(
        id="patrol_tracks", title="Patrol tracks",
        description="Cleaned GPS track of one worker's shift.",
        table="shift_tracks", id_type="integer", geometry_type="MultiLineString",
        datetime="shift_start", datetime_end="shift_end", read_permission=Permission.READ_PATROLS,
        default_sort=("id",),
        properties=(
            Prop("worker_id", S), Prop("day", D), Prop("shift_start", T), Prop("shift_end", T),
            Prop("n_fixes", INT), Prop("n_spikes", INT), Prop("n_jitter", INT), Prop("length_m", N),
        ),
    ),
    _population("building", "building_id", "Population per building"),
    _population("grid", "grid_id", "Population per grid cell"),
    _population("community", "community_id", "Population per community"),
)}


def may_read(coll: Collection, role: str | None, anonymous_collections: list[str]) -> bool:
    if role is None:
        return coll.id in anonymous_collections
    return policy.allows(role, coll.read_permission) or coll.id in anonymous_collections
