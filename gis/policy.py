"""Who may do what: the one table of roles and permissions.

Every check in the API (routes, collections, properties, the live stream) and the user
administration (which roles exist, who may be privileged) reads :data:`POLICY`. docs/api.md
shows the same table; ``tests/test_policy.py`` asserts both agree.

A permission is granted to a set of roles. ``privileged`` is not a role but a flag on a user
(``onemap users add --privileged``), allowed only for the roles of :attr:`Permission.PRIVILEGED`:
such users read person-level population unsuppressed, and every such read is audited.
Anonymous callers hold no permission; they may read the collections configured in
``ONEMAP_ANONYMOUS_COLLECTIONS`` (and tiles, the viewer, the OGC landing pages).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

#: Every role a user can hold (the CHECK on ``api_users.role``).
ROLES: Final[tuple[str, ...]] = ("admin", "operator", "planner", "viewer", "device")


class Permission(StrEnum):
    #: operational layers (events, geofences, reference layers), event history, event and
    #: camera analytics, KPIs, the live stream (events and status changes)
    READ = "read"
    #: population per building/grid/community (suppressed below 5 unless privileged)
    READ_POPULATION = "read_population"
    #: where patrollers are: nearest patrollers, alarms, ``position``/``alarm`` stream messages
    READ_POSITIONS = "read_positions"
    #: patrol coverage of roads per grid cell
    READ_COVERAGE = "read_coverage"
    #: walking access to facilities: per-building times, suppressed per-community counts,
    #: candidate sites (``/analytics/access*``); never person-level
    READ_ACCESS = "read_access"
    #: patrol details: tracks, mileage, check-ins, grid staff phone numbers
    READ_PATROLS = "read_patrols"
    #: who staffs the district: grid cells' ``staff_id``/``staff_name``, cameras' ``stream_url``
    #: (stripped for everyone else, anonymous included; docs/security.md)
    READ_STAFF = "read_staff"
    #: ``POST /events``
    REPORT_EVENTS = "report_events"
    #: ``PATCH /events/{id}`` (lifecycle transitions, dispatch)
    CHANGE_EVENT_STATUS = "change_event_status"
    #: ``POST /gps/fixes``
    POST_FIXES = "post_fixes"
    #: dispatch: suggestions, ``POST /events/{id}/dispatch``, the queue, priority deadlines
    DISPATCH = "dispatch"
    #: the dispatched worker's steps (accept, arrive, resolve); device accounts only for events
    #: dispatched to their own worker
    WORK_EVENTS = "work_events"
    #: care visits: the overdue list and a day's route per worker (``/care/overdue``,
    #: ``/care/route``); person-level rows only for privileged users, every such read audited
    CARE = "care"
    #: ``POST /care/visits`` (device accounts: as the worker their device belongs to)
    RECORD_VISITS = "record_visits"
    #: may be made privileged (person-level population, audited)
    PRIVILEGED = "privileged"


_R = frozenset({"admin", "operator", "planner", "viewer"})

#: permission → roles holding it (the one table)
POLICY: Final[dict[Permission, frozenset[str]]] = {
    Permission.READ: _R,
    Permission.READ_POPULATION: frozenset({"admin", "operator", "planner"}),
    Permission.READ_POSITIONS: frozenset({"admin", "operator", "viewer"}),
    Permission.READ_COVERAGE: frozenset({"admin", "operator", "planner"}),
    Permission.READ_ACCESS: frozenset({"admin", "operator", "planner"}),
    Permission.READ_PATROLS: frozenset({"admin", "operator"}),
    Permission.READ_STAFF: frozenset({"admin", "operator"}),
    Permission.REPORT_EVENTS: frozenset({"admin", "operator", "device"}),
    Permission.CHANGE_EVENT_STATUS: frozenset({"admin", "operator"}),
    Permission.POST_FIXES: frozenset({"admin", "device"}),
    Permission.DISPATCH: frozenset({"admin", "operator"}),
    Permission.WORK_EVENTS: frozenset({"admin", "device"}),
    Permission.CARE: frozenset({"admin", "operator"}),
    Permission.RECORD_VISITS: frozenset({"admin", "device"}),
    Permission.PRIVILEGED: frozenset({"admin", "operator"}),
}

#: live stream message types → the permission needed to receive them
STREAM_MESSAGES: Final[dict[str, Permission]] = {
    "event": Permission.READ,
    "event_status": Permission.READ,
    "alarm": Permission.READ_POSITIONS,
    "position": Permission.READ_POSITIONS,
}

assert set(POLICY) == set(Permission), "every permission needs a row in POLICY"
assert all(roles <= set(ROLES) for roles in POLICY.values()), "POLICY names an unknown role"


def roles_for(permission: Permission) -> frozenset[str]:
    return POLICY[permission]


def allows(role: str | None, permission: Permission) -> bool:
    """Whether ``role`` (None: anonymous) holds ``permission``."""
    return role is not None and role in POLICY[permission]


def permissions_of(role: str) -> frozenset[Permission]:
    return frozenset(p for p, roles in POLICY.items() if role in roles)


def may_be_privileged(role: str) -> bool:
    return allows(role, Permission.PRIVILEGED)


def stream_types(role: str) -> tuple[str, ...]:
    """Message types of the live stream ``role`` receives (in :data:`STREAM_MESSAGES` order)."""
    return tuple(t for t, p in STREAM_MESSAGES.items() if allows(role, p))
