"""The event (case) lifecycle as plain data: which status may follow which.

    reported -> accepted -> dispatched -> handled -> verified -> closed
    reported | accepted -> rejected
    verified | closed -> dispatched            (reopen)
    dispatched -> en_route -> on_scene -> handled
                 (the dispatched worker's steps: accept, arrive, resolve; migration 0005_dispatch)

The database enforces the same table (``event_transition`` rows + the ``events_check_transition``
trigger, SQLSTATE :data:`ILLEGAL_TRANSITION_SQLSTATE`); a test asserts both agree. The API uses
this module to answer 409 with the allowed transitions without a round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from core.errors import ConflictError

STATUSES: Final[tuple[str, ...]] = (
    "reported",
    "accepted",
    "dispatched",
    "en_route",
    "on_scene",
    "handled",
    "verified",
    "closed",
    "rejected",
)
TERMINAL: Final[frozenset[str]] = frozenset({"rejected"})
#: Statuses that count as "open" for SLA purposes (not closed, not rejected).
OPEN_STATUSES: Final[tuple[str, ...]] = (
    "reported", "accepted", "dispatched", "en_route", "on_scene", "handled", "verified",
)
#: Statuses of an event whose dispatched worker is busy with it.
WORKING_STATUSES: Final[tuple[str, ...]] = ("dispatched", "en_route", "on_scene")
#: Statuses counting as "not handled yet" for deadlines (queue, escalation).
UNHANDLED_STATUSES: Final[tuple[str, ...]] = ("reported", "accepted", *WORKING_STATUSES)
#: The column of ``events`` that records when a status was (last) reached.
TIMESTAMP_COLUMN: Final[dict[str, str]] = {s: f"{s}_at" for s in STATUSES}

#: from status -> {to status: action name}
TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    "reported": {"accepted": "accept", "rejected": "reject"},
    "accepted": {"dispatched": "dispatch", "rejected": "reject"},
    "dispatched": {"en_route": "accept", "handled": "handle"},
    "en_route": {"on_scene": "arrive"},
    "on_scene": {"handled": "resolve"},
    "handled": {"verified": "verify"},
    "verified": {"closed": "close", "dispatched": "reopen"},
    "closed": {"dispatched": "reopen"},
    "rejected": {},
}

#: SQLSTATE raised by the database for an illegal status change (DETAIL carries JSON
#: ``{"event_id", "from", "to", "allowed"}``).
ILLEGAL_TRANSITION_SQLSTATE: Final[str] = "OM409"
#: SQLSTATE raised on UPDATE/DELETE of ``event_status_history`` (append-only).
APPEND_ONLY_SQLSTATE: Final[str] = "OM405"


@dataclass(frozen=True)
class IllegalTransition(ConflictError, ValueError):
    """``status`` cannot go to ``target``; ``allowed`` lists where it can go (HTTP 409)."""

    status: str
    target: str
    allowed: tuple[str, ...]

    def __post_init__(self) -> None:  # the OnemapError fields (a frozen dataclass skips its __init__)
        object.__setattr__(self, "message", str(self))
        object.__setattr__(self, "hint", None)
        object.__setattr__(self, "extra", {"current": self.status, "allowed": list(self.allowed)})

    def __str__(self) -> str:
        allowed = ", ".join(self.allowed) or "none (terminal)"
        return f"illegal event status transition {self.status} -> {self.target}; allowed: {allowed}"


def allowed_transitions(status: str) -> list[str]:
    """Statuses reachable in one step from ``status`` (empty for terminal or unknown statuses)."""
    return list(TRANSITIONS.get(status, {}))


def is_allowed(status: str, target: str) -> bool:
    return target in TRANSITIONS.get(status, {})


def action_for(status: str, target: str) -> str:
    """The name of the step (``accept``, ``reopen``, ...); raises :class:`IllegalTransition`."""
    check_transition(status, target)
    return TRANSITIONS[status][target]


def check_transition(status: str, target: str) -> None:
    if status not in TRANSITIONS:
        raise ValueError(f"unknown event status {status!r}; known: {', '.join(STATUSES)}")
    if target not in TRANSITIONS:
        raise ValueError(f"unknown event status {target!r}; known: {', '.join(STATUSES)}")
    if not is_allowed(status, target):
        raise IllegalTransition(status, target, tuple(allowed_transitions(status)))


def transition_rows() -> list[tuple[str, str, str]]:
    """(from, to, action) rows, as stored in the ``event_transition`` table."""
    return [(src, dst, action) for src, targets in TRANSITIONS.items() for dst, action in targets.items()]
