"""Roles: the table in docs/api.md equals gis/policy.py, and every check uses that table."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import APIRoute

from api.collections import COLLECTIONS
from core.settings import Settings
from gis import accounts, policy
from gis.policy import POLICY, Permission

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def _doc_rows() -> list[tuple[str, set[str], str]]:
    """(permission or '(none)', roles, routes cell) of the permission table in docs/api.md."""
    text = DOC.read_text(encoding="utf-8")
    lines = text.split("| permission | roles | routes and data |", 1)[1].strip().splitlines()
    rows = []
    for line in lines[1:]:
        if not line.startswith("|"):
            break
        perm, roles, routes = (c.strip() for c in line.strip().strip("|").split("|"))
        rows.append((perm.strip("`"), {r.strip() for r in roles.split(",")}, routes))
    return rows


def _expand(token: str) -> list[str]:
    """`/x/{a,b}/y` → `/x/a/y`, `/x/b/y` (braces without a comma are path parameters)."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", token)
    if not m:
        return [token]
    return [x for alt in m[1].split(",") for x in _expand(token[:m.start()] + alt + token[m.end():])]


def _routes(cell: str) -> list[tuple[str | None, str]]:
    """(method or None, path pattern) named in a routes cell."""
    out = []
    for token in re.findall(r"`([^`]+)`", cell):
        method, _, path = token.rpartition(" ")
        if path.startswith("/"):
            out += [(method or None, p) for p in _expand(path)]
    return out


def test_docs_table_equals_policy() -> None:
    documented = {perm: roles for perm, roles, _ in _doc_rows() if perm != "(none)"}
    assert documented == {str(p): set(roles) for p, roles in POLICY.items()}


def test_every_role_is_known_to_accounts() -> None:
    assert accounts.ROLES == policy.ROLES
    assert accounts.PRIVILEGED_ROLES == POLICY[Permission.PRIVILEGED]
    for role in policy.ROLES:
        assert policy.permissions_of(role), role


def _api_routes() -> list[APIRoute]:
    """The routes of every router the app includes (paths with their router's prefix)."""
    import importlib
    import pkgutil

    import api.routes

    modules = [importlib.import_module(f"api.routes.{m.name}") for m in pkgutil.iter_modules(api.routes.__path__)]
    modules = [m for m in modules if hasattr(m, "router")]
    return [r for m in modules for r in m.router.routes if isinstance(r, APIRoute)]


def _required(route: APIRoute) -> set[Permission]:
    found: set[Permission] = set()
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        perm = getattr(dep.call, "permission", None)
        if perm is not None:
            found.add(perm)
        stack.extend(dep.dependencies)
    return found


def _app_path(doc_path: str) -> re.Pattern[str]:
    pattern = re.escape(doc_path.rstrip("…").rstrip("/")).replace(r"\*", "[^/]+")
    pattern = re.sub(r"\\\{\w+\\\}", r"\\{\\w+\\}", pattern)
    return re.compile(f"^{pattern}$")


def test_routes_require_the_documented_permission() -> None:
    api_routes = _api_routes()
    checked = 0
    for perm, _, cell in _doc_rows():
        for method, path in _routes(cell):
            if path.startswith("/collections/") or path == "/stream":
                continue  # collections: test below; stream: checked in the route (test_stream_types)
            rx = _app_path(path)
            matches = [r for r in api_routes if rx.match(r.path) and (method is None or method in r.methods)]
            if perm == "(none)":
                assert all(not _required(r) for r in matches), path
                continue
            assert matches, f"docs/api.md names {method or ''} {path}: no such route"
            for r in matches:
                assert _required(r) == {Permission(perm)}, f"{sorted(r.methods)} {r.path}"
                checked += 1
    assert checked >= 15
    # every route that checks a permission is in the table
    documented = {(m, _app_path(p)) for perm, _, cell in _doc_rows() for m, p in _routes(cell)}
    for r in api_routes:
        if _required(r):
            assert any(rx.match(r.path) and (m is None or m in r.methods) for m, rx in documented), r.path


def test_collections_read_the_documented_permission() -> None:
    anonymous = set(Settings().api.anonymous_collections)
    for perm, _, cell in _doc_rows():
        for _, path in _routes(cell):
            if not path.startswith("/collections/"):
                continue
            rx = re.compile("^" + path.split("/")[2].replace("*", ".+") + "$")
            ids = [c for c in COLLECTIONS if rx.match(c)]
            assert ids, path
            for cid in ids:
                if perm == "(none)":
                    assert cid in anonymous
                else:
                    assert COLLECTIONS[cid].read_permission == Permission(perm), cid
    assert COLLECTIONS["grid_cells"].prop("staff_phone").permission == Permission.READ_PATROLS  # type: ignore[union-attr]
    for cid, prop in (("grid_cells", "staff_id"), ("grid_cells", "staff_name"), ("cameras", "stream_url")):
        assert COLLECTIONS[cid].prop(prop).permission == Permission.READ_STAFF, (cid, prop)  # type: ignore[union-attr]


def test_stream_types() -> None:
    assert policy.stream_types("planner") == ("event", "event_status")
    for role in ("admin", "operator", "viewer"):
        assert policy.stream_types(role) == ("event", "event_status", "alarm", "position")
    assert policy.stream_types("device") == ()
    assert not policy.allows(None, Permission.READ)
