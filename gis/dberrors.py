"""Database errors translated once into :mod:`core.errors`, so callers never look at SQLSTATEs.

    with db_errors():
        conn.execute(...)

* unique violation (23505) → :class:`ConflictError` ("events id 'E1' already exists");
* foreign key violation (23503) → :class:`InputError` naming the field ("unknown worker_id 'W9'");
* check / not-null violation (23514, 23502), data exceptions (22xxx) → :class:`InputError`;
* illegal event status transition (``OM409``, see :mod:`gis.lifecycle`) → :class:`ConflictError`
  with ``allowed`` (from the error's JSON DETAIL);
* with ``postgis_input=True`` also PostGIS refusing a value (XX000, e.g. a point outside the
  EPSG:4548 projection domain) → :class:`InputError`.

Anything else (connection lost, timeouts, bugs) passes through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError

from core.errors import ConflictError, InputError, OnemapError
from gis.lifecycle import ILLEGAL_TRANSITION_SQLSTATE

_KEY = re.compile(r"Key \((?P<cols>[^)]*)\)=\((?P<vals>.*)\)")


def _diag(orig: Any, field: str) -> str | None:
    diag = getattr(orig, "diag", None)
    return getattr(diag, field, None) if diag is not None else None


def _key(orig: Any) -> tuple[str, str] | None:
    m = _KEY.search(_diag(orig, "message_detail") or "")
    return (m["cols"], m["vals"]) if m else None


def _first_line(orig: Any) -> str:
    return (str(orig).splitlines() or [type(orig).__name__])[0]


def translate(exc: DBAPIError, *, postgis_input: bool = False) -> OnemapError | None:
    """The :mod:`core.errors` equivalent of a database error, or None to let it pass."""
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or ""
    table = _diag(orig, "table_name")
    if state == "23505":
        key = _key(orig)
        what = f"{table} {key[0]} {key[1]!r}" if key else (table or "row")
        return ConflictError(f"{what} already exists", field=key[0] if key else None)
    if state == "23503":
        key = _key(orig)
        if key:
            return InputError(f"unknown {key[0]} {key[1]!r}", field=key[0])
        return InputError(f"a referenced row does not exist: {_first_line(orig)}")
    if state == ILLEGAL_TRANSITION_SQLSTATE:
        try:
            detail = orjson.loads(_diag(orig, "message_detail") or "{}")
        except orjson.JSONDecodeError:
            detail = {}
        if "from" in detail and "to" in detail:
            message = f"illegal event status transition {detail['from']} -> {detail['to']}"
            return ConflictError(message, allowed=list(detail.get("allowed", [])), current=detail["from"])
        return ConflictError(_diag(orig, "message_primary") or _first_line(orig),
                             allowed=list(detail.get("allowed", [])))
    if state in ("23514", "23502"):
        column = _diag(orig, "column_name")
        return InputError(f"invalid value: {_first_line(orig)}", **({"field": column} if column else {}))
    if state[:2] == "22" or (postgis_input and state == "XX000"):
        return InputError(f"invalid parameter: {_first_line(orig)}")
    return None


@contextmanager
def db_errors(*, postgis_input: bool = False) -> Iterator[None]:
    """Re-raise database errors that mean bad input or a conflict as :mod:`core.errors` classes."""
    try:
        yield
    except DBAPIError as exc:
        err = translate(exc, postgis_input=postgis_input)
        if err is None:
            raise
        raise err from exc
