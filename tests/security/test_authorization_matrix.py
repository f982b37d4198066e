"""The authorization matrix, generated from the one roles table (gis.policy.POLICY) and the app's
routes: every route that requires a permission × every role × no / bad / expired / revoked token,
and every collection × every role (issue 17)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute

from api.collections import COLLECTIONS, may_read
from gis import policy
from gis.policy import POLICY, Permission
from tests.api_support import auth

#: a value for each path parameter (the answer may be 404/422: only 401/403 matter here)
PATH_VALUES = {"event_id": "E1", "collection_id": "buildings", "feature_id": "B1", "layer": "buildings",
               "path": "tileset.json", "id": "E1"}


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


def _protected_routes() -> list[tuple[str, str, Permission]]:
    """(method, concrete path, permission) of every route the app includes that requires one."""
    import importlib
    import pkgutil

    import api.routes

    modules = [importlib.import_module(f"api.routes.{m.name}") for m in pkgutil.iter_modules(api.routes.__path__)]
    out = []
    for r in (r for m in modules if hasattr(m, "router") for r in m.router.routes if isinstance(r, APIRoute)):
        perms = _required(r)
        if not perms:
            continue
        assert len(perms) == 1, (r.path, perms)
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PATH_VALUES.get(m[1], "x"), r.path)
        for method in sorted(r.methods - {"HEAD"}):
            out.append((method, path, next(iter(perms))))
    return out


ROUTES = _protected_routes()


def _call(client: Any, method: str, path: str, headers: dict[str, str]) -> int:  # noqa: ANN401
    if path == "/stream":  # an endless answer: the status line is enough
        with client.stream(method, path, headers=headers) as r:
            return int(r.status_code)
    kw: dict[str, Any] = {"json": {}} if method in ("POST", "PATCH", "PUT") else {}
    return int(client.request(method, path, headers=headers, **kw).status_code)


def test_matrix_covers_every_permission() -> None:
    used = {perm for _, _, perm in ROUTES}
    # PRIVILEGED is a flag on users (no route requires it); READ_STAFF guards properties
    assert used | {Permission.PRIVILEGED, Permission.READ_STAFF} == set(Permission), set(Permission) - used
    assert len(ROUTES) >= 15


@pytest.mark.parametrize("role", [*policy.ROLES, None])
def test_every_route_every_role(client, tokens, role: str | None) -> None:  # noqa: ANN001
    wrong: list[str] = []
    for method, path, perm in ROUTES:
        status = _call(client, method, path, auth(tokens, role))
        if role is None:
            expected_ok = False
            if status != 401:
                wrong.append(f"anonymous {method} {path}: {status}, expected 401")
        else:
            expected_ok = role in POLICY[perm]
            if expected_ok and status in (401, 403):
                wrong.append(f"{role} {method} {path}: {status}, {perm} allows it")
            if not expected_ok and status != 403:
                wrong.append(f"{role} {method} {path}: {status}, expected 403 ({perm})")
        assert status < 500, f"{role} {method} {path}: {status}"
    assert not wrong, "\n".join(wrong)


def test_collections_every_role(client, tokens, api_settings) -> None:  # noqa: ANN001
    anonymous = api_settings.api.anonymous_collections
    for cid, coll in COLLECTIONS.items():
        for role in [*policy.ROLES, None]:
            r = client.get(f"/collections/{cid}/items", params={"limit": 1}, headers=auth(tokens, role))
            if may_read(coll, role, anonymous):
                assert r.status_code == 200, (cid, role, r.text)
                for f in r.json()["features"]:
                    hidden = {p.name for p in coll.properties} - {p.name for p in coll.visible_properties(role)}
                    assert not hidden & set(f["properties"]), (cid, role, hidden & set(f["properties"]))
            else:
                assert r.status_code == (401 if role is None else 403), (cid, role, r.status_code)


BAD_TOKENS = {"garbage": "Bearer not-a-token", "empty scheme": "Bearer ", "basic": "Basic YWRtaW46YWRtaW4=",
              "nul-free junk": "Bearer " + "x" * 4000}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_every_route_bad_token(client, kind: str) -> None:  # noqa: ANN001
    headers = {"Authorization": BAD_TOKENS[kind]}
    for method, path, _ in ROUTES:
        assert _call(client, method, path, headers) == 401, (kind, method, path)


def _token_for(api_db_url: str, name: str, role: str, **kw: Any) -> str:  # noqa: ANN401
    from gis import accounts

    engine = sa.create_engine(api_db_url)
    try:
        token = accounts.add_user(engine, name, role, **kw)
    finally:
        engine.dispose()
    assert token
    return token


@pytest.mark.parametrize("role", policy.ROLES)
def test_every_route_revoked_token(client, api_db_url, role: str) -> None:  # noqa: ANN001
    from gis import accounts

    token = _token_for(api_db_url, f"m-revoked-{role}", role)
    engine = sa.create_engine(api_db_url)
    try:
        accounts.revoke_user(engine, f"m-revoked-{role}")
    finally:
        engine.dispose()
    for method, path, _ in ROUTES:
        assert _call(client, method, path, {"Authorization": f"Bearer {token}"}) == 401, (role, method, path)


@pytest.mark.parametrize("role", policy.ROLES)
def test_every_route_expired_token(client, api_db_url, role: str) -> None:  # noqa: ANN001
    import inspect

    from gis import accounts

    if "ttl_s" not in inspect.signature(accounts.add_user).parameters:
        pytest.skip("token expiry (gis.accounts.add_user ttl_s, helper S-b) is not there yet")
    token = _token_for(api_db_url, f"m-expired-{role}", role, ttl_s=0.05)
    time.sleep(0.2)
    for method, path, _ in ROUTES:
        assert _call(client, method, path, {"Authorization": f"Bearer {token}"}) == 401, (role, method, path)
