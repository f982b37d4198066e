"""Issue 17, findings 3 and 4: accounts people use, identities bound to what they may do, a true record.

Passwords (argon2id) and ``POST /auth/login`` → an expiring token; logout revokes it; expired and
revoked tokens get 401; five failed logins for one user or from one address → 429 with
``Retry-After``; a revoked or expired token's open SSE stream is closed; a device account posts
fixes only for its bound devices (403 otherwise) and its events get a server id, the account's
``source`` and a ``reported_at`` near the server's clock (422 otherwise); the history's actor is
the authenticated user; every write leaves an audit row naming who, what and which ids. Each of
these fails on the code before issue 17.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.api_support import LAT0, LON0, auth, make_settings, running_server

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def owner(api_db_url: str):  # noqa: ANN201
    engine = sa.create_engine(api_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _no_failures(owner: sa.Engine) -> None:
    """Every test starts with no failed logins on record (all TestClient requests share one address)."""
    with owner.begin() as conn:
        conn.execute(sa.text("DELETE FROM login_failures"))


@pytest.fixture(scope="module")
def person(owner: sa.Engine, tokens) -> str:  # noqa: ANN001
    from gis.accounts import add_user

    add_user(owner, "s-alice", "operator", password=PASSWORD, ttl_s=False)
    return "s-alice"


def _login(client, name: str, password: str = PASSWORD):  # noqa: ANN001, ANN202
    return client.post("/auth/login", json={"username": name, "password": password})


def _audit(owner: sa.Engine, action: str) -> list[sa.Row]:
    with owner.connect() as conn:
        return conn.execute(sa.text(
            "SELECT user_name, role, action, target, ids, details FROM audit_log WHERE action = :a ORDER BY id"),
            {"a": action}).all()


# --- accounts people use ---------------------------------------------------------------------


def test_login_returns_an_expiring_bearer_token(client, person, api_settings, owner) -> None:  # noqa: ANN001
    r = _login(client, person)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["access_token"].startswith("om_")
    ttl = api_settings.api.token_ttl_s
    assert ttl - 120 <= body["expires_in"] <= ttl
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert me["name"] == person and me["role"] == "operator" and me["expires_at"]
    with owner.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM api_users WHERE name = :n"), {"n": person}).scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert [r.target for r in _audit(owner, "auth.login")][-1] == person


def test_wrong_password_and_devices_cannot_log_in(client, person) -> None:  # noqa: ANN001
    assert _login(client, person, "not the password").status_code == 401
    assert _login(client, "nobody-here").status_code == 401
    r = _login(client, "t-device", "whatever-it-is")  # device accounts use tokens only
    assert r.status_code == 401 and r.json()["detail"] == "invalid user name or password"


def test_logout_revokes_the_presented_token(client, person) -> None:  # noqa: ANN001
    token = _login(client, person).json()["access_token"]
    other = _login(client, person).json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    assert client.get("/auth/me", headers=h).status_code == 200
    assert client.post("/auth/logout", headers=h).status_code == 204
    assert client.get("/auth/me", headers=h).status_code == 401
    assert client.get("/auth/me", headers={"Authorization": f"Bearer {other}"}).status_code == 200
    assert client.post("/auth/logout").status_code == 401


def test_expired_token_is_401(client, person, owner) -> None:  # noqa: ANN001
    from api.auth import hash_token

    token = _login(client, person).json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    assert client.get("/collections/events/items?limit=1", headers=h).status_code == 200
    with owner.begin() as conn:
        conn.execute(sa.text("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = :h"),
                     {"h": hash_token(token)})
    r = client.get("/collections/events/items?limit=1", headers=h)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_expiry_holds_inside_the_token_cache() -> None:
    """With ``auth_cache_s`` > 0 a cached user whose token has expired since is still refused."""
    from api.auth import TokenCache, User, hash_token
    from api.deps import resolve_user
    from api.errors import Unauthorized

    class State:
        tokens = TokenCache(ttl_s=600)

    past = datetime.now(UTC) - timedelta(seconds=1)
    State.tokens.put(hash_token("om_x"), User("u", "viewer", expires_at=past))
    with pytest.raises(Unauthorized, match="expired"):
        resolve_user(State, "om_x")  # type: ignore[arg-type]


def test_five_failures_for_one_user_then_429(client, person, owner, api_settings) -> None:  # noqa: ANN001
    for _ in range(5):
        assert _login(client, person, "wrong password!").status_code == 401
    r = _login(client, person)  # even the right password: the limit is checked first
    assert r.status_code == 429, r.text
    retry = int(r.headers["retry-after"])
    assert 0 < retry <= api_settings.api.login_window_s
    failed = [row for row in _audit(owner, "auth.login_failed") if row.target == person]
    assert len(failed) >= 5 and all(row.ids == [person] for row in failed)
    assert _audit(owner, "auth.login_throttled")


def test_five_failures_from_one_address_then_429(client, person) -> None:  # noqa: ANN001
    for i in range(5):
        assert _login(client, f"guess-{i}", "wrong password!").status_code == 401
    r = _login(client, person)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_login_failures_are_shared_by_server_processes(api_settings, tokens, person) -> None:  # noqa: ANN001
    """The count lives in the database: failures through one app instance throttle another."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(api_settings)) as a, TestClient(create_app(api_settings)) as b:
        for i in range(5):
            assert _login(a if i % 2 else b, person, "wrong password!").status_code == 401
        assert _login(b, person).status_code == 429


# --- revocation and expiry reach open streams --------------------------------------------------


class _Stream:
    """Reads ``/stream`` in a thread; ``lines`` gets each line, then None when the response ends."""

    def __init__(self, url: str, token: str) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.status: int | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._run, args=(url, token), daemon=True).start()
        assert self._ready.wait(60)

    def _run(self, url: str, token: str) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(60.0)) as c, \
                    c.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as r:
                self.status = r.status_code
                self._ready.set()
                for line in r.iter_lines():
                    self.lines.put(line)
        except httpx.HTTPError as exc:
            self.lines.put(f"! {exc}")
        finally:
            self._ready.set()
            self.lines.put(None)

    def until_closed(self, timeout: float = 60.0) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                return seen
            seen.append(line)
        raise AssertionError(f"stream still open after {timeout} s; saw {seen[-5:]}")


def test_revoked_and_expired_tokens_close_open_streams(api_db_url, tiles_dir, tokens, owner) -> None:  # noqa: ANN001
    from api.auth import hash_token
    from gis.accounts import add_user, revoke_user

    revoked_token = add_user(owner, "s-stream-revoked", "viewer")
    expiring_token = add_user(owner, "s-stream-expired", "operator")
    settings = make_settings(api_db_url, tiles_dir, auth_cache_s=1.0, sse_heartbeat_s=1.0)
    with running_server(settings) as base:
        revoked = _Stream(f"{base}/stream", revoked_token)
        expiring = _Stream(f"{base}/stream", expiring_token)
        kept = _Stream(f"{base}/stream", tokens["viewer"])
        assert revoked.status == expiring.status == kept.status == 200
        revoke_user(owner, "s-stream-revoked")
        with owner.begin() as conn:
            conn.execute(sa.text("UPDATE api_tokens SET expires_at = now() WHERE token_hash = :h"),
                         {"h": hash_token(expiring_token)})
        assert "event: auth" in revoked.until_closed()
        assert "event: auth" in expiring.until_closed()
        assert kept.lines.get(timeout=30) is not None  # the others keep streaming
        r = httpx.get(f"{base}/stream", headers={"Authorization": f"Bearer {revoked_token}"}, timeout=30)
        assert r.status_code == 401


# --- bound identities --------------------------------------------------------------------------


def test_device_posts_fixes_only_for_its_devices(client, tokens, owner) -> None:  # noqa: ANN001
    from gis.accounts import add_user

    token = add_user(owner, "s-dev-7", "device", devices=["D001"])
    h = {"Authorization": f"Bearer {token}"}
    t = (datetime.now(UTC) - timedelta(minutes=3)).replace(microsecond=0)
    batch = [{"device_id": "D001", "t": t.isoformat(), "lon": LON0, "lat": LAT0},
             {"device_id": "D002", "t": t.isoformat(), "lon": LON0, "lat": LAT0}]
    r = client.post("/gps/fixes", json=batch, headers=h)
    assert r.status_code == 403, r.text
    assert "D002" in r.json()["detail"] and r.json()["device_ids"] == ["D002"]
    with owner.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM gps_fixes WHERE t = :t"), {"t": t}).scalar_one()
    assert stored == 0  # the whole batch is refused
    refused = _audit(owner, "gps.fixes_refused")[-1]
    assert refused.user_name == "s-dev-7" and refused.ids == ["D002"]
    r = client.post("/gps/fixes", json=batch[:1], headers=h)
    assert r.status_code == 202 and r.json()["accepted"] == 1
    done = _audit(owner, "gps.fixes")[-1]
    assert done.user_name == "s-dev-7" and done.ids == ["D001"] and done.details["accepted"] == 1


def test_device_events_server_id_account_source_and_clock(client, owner) -> None:  # noqa: ANN001
    from gis.accounts import add_user

    h = {"Authorization": f"Bearer {add_user(owner, 's-cam-1', 'device', source='resident')}"}
    base = {"category": "sanitation", "lon": LON0 + 0.0005, "lat": LAT0 + 0.0005}
    r = client.post("/events", json={**base, "reported_at": "2000-01-01T00:00:00Z"}, headers=h)
    assert r.status_code == 422 and ["body", "reported_at"] in [e["loc"] for e in r.json()["errors"]]
    late = (datetime.now(UTC) - timedelta(minutes=20)).isoformat()
    assert client.post("/events", json={**base, "reported_at": late}, headers=h).status_code == 422
    r = client.post("/events", json={**base, "id": "EMINE1"}, headers=h)
    assert r.status_code == 422 and ["body", "id"] in [e["loc"] for e in r.json()["errors"]]
    near = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    r = client.post("/events", json={**base, "source": "camera", "reported_at": near}, headers=h)
    assert r.status_code == 201, r.text
    f = r.json()
    assert f["id"] != "EMINE1" and f["properties"]["source"] == "resident"  # the account's, not the body's
    audit = _audit(owner, "event.create")[-1]
    assert audit.user_name == "s-cam-1" and audit.ids == [f["id"]] and audit.details["client_source"] == "camera"


def test_people_may_still_give_ids_and_sources(client, tokens) -> None:  # noqa: ANN001
    r = client.post("/events", json={"id": "EOPS-1", "category": "dispute", "source": "camera",
                                     "lon": LON0, "lat": LAT0}, headers=auth(tokens, "operator"))
    assert r.status_code == 201 and r.json()["id"] == "EOPS-1" and r.json()["properties"]["source"] == "camera"


def test_history_actor_is_the_authenticated_user(client, tokens, owner) -> None:  # noqa: ANN001
    h = auth(tokens, "operator")
    eid = client.post("/events", json={"category": "greening", "lon": LON0, "lat": LAT0}, headers=h).json()["id"]
    r = client.patch(f"/events/{eid}", json={"status": "accepted", "actor": "t-admin", "note": "ok"}, headers=h)
    assert r.status_code == 200, r.text
    hist = client.get(f"/events/{eid}/history", headers=h).json()["history"]
    assert [x["actor"] for x in hist] == ["t-operator", "t-operator"]
    assert "t-admin" in hist[-1]["note"] and "ok" in hist[-1]["note"]
    audit = _audit(owner, "event.status")[-1]
    assert audit.user_name == "t-operator" and audit.ids == [eid] and audit.details["client_actor"] == "t-admin"


# --- the command line: passwords, rotation, list, first admin -----------------------------------


@pytest.fixture
def cli(api_db_url, tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    from typer.testing import CliRunner

    from core.settings import get_settings
    from onemap.cli import app

    monkeypatch.setenv("ONEMAP_DATABASE_URL", api_db_url)
    monkeypatch.setenv("ONEMAP_VAR_DIR", str(tmp_path))
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args, input=None: runner.invoke(app, list(args), input=input)  # noqa: A006
    get_settings.cache_clear()


def test_cli_passwords_rotation_and_list(cli, client, owner) -> None:  # noqa: ANN001
    r = cli("users", "add", "s-bob", "--role", "planner", "--password-stdin", input="a long password 1\n")
    assert r.exit_code == 0, r.output
    assert _login(client, "s-bob", "a long password 1").status_code == 200
    assert cli("users", "add", "s-short", "--role", "viewer", "--password-stdin", input="short\n").exit_code == 1
    r = cli("users", "add", "s-dev-9", "--role", "device", "--device", "D003", "--device", "D002", "--ttl", "30d")
    assert r.exit_code == 0, r.output
    first = r.output.strip().splitlines()[-1]
    r = cli("users", "token", "s-dev-9", "--ttl", "90d")
    second = r.output.strip().splitlines()[-1]
    assert r.exit_code == 0 and second.startswith("om_") and second != first
    for tok in (first, second):  # rotation: the old one keeps working
        assert client.get("/auth/me", headers={"Authorization": f"Bearer {tok}"}).status_code == 200
    third = cli("users", "token", "s-dev-9", "--revoke-old").output.strip().splitlines()[-1]
    assert client.get("/auth/me", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert client.get("/auth/me", headers={"Authorization": f"Bearer {third}"}).status_code == 200
    r = cli("users", "list")
    line = next(ln for ln in r.output.splitlines() if ln.startswith("s-dev-9"))
    assert "D002,D003" in line and str(datetime.now(UTC).year + 1) in line  # expiry of a 365 d token
    assert line.split()[6] != "-"  # last use (of the token just used)
    r = cli("users", "password", "s-bob", "--password-stdin", input="another long one\n")
    assert r.exit_code == 0 and _login(client, "s-bob", "a long password 1").status_code == 401
    actions = {a for (a,) in owner.connect().execute(sa.text(
        "SELECT action FROM audit_log WHERE target IN ('s-bob', 's-dev-9')"))}
    assert {"user.add", "user.token", "user.password", "auth.login", "auth.login_failed"} <= actions


def test_init_admin_writes_a_private_password_file_once(cli, client, owner, tmp_path) -> None:  # noqa: ANN001
    with owner.begin() as conn:  # pretend a fresh installation: no active admin
        admins = conn.execute(sa.text(
            "UPDATE api_users SET revoked_at = now() WHERE role = 'admin' AND revoked_at IS NULL RETURNING id"
        )).scalars().all()
    try:
        r = cli("users", "init-admin", "--name", "s-first-admin")
        assert r.exit_code == 0, r.output
        path = tmp_path / "initial-admin.txt"
        assert str(path) in r.output
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.getuid()
        password = next(ln.split(": ", 1)[1] for ln in path.read_text().splitlines() if ln.startswith("password: "))
        before = path.read_text()
        r = cli("users", "init-admin", "--name", "s-first-admin")  # idempotent
        assert r.exit_code == 0 and "exists" in r.output and path.read_text() == before
        login = _login(client, "s-first-admin", password)
        assert login.status_code == 200, login.text
        me = client.get("/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}).json()
        assert me["role"] == "admin"
    finally:
        with owner.begin() as conn:
            conn.execute(sa.text("UPDATE api_users SET revoked_at = NULL WHERE id = ANY(:ids)"), {"ids": admins})


def test_account_changes_are_audited(owner) -> None:
    from gis.accounts import add_user, revoke_user

    add_user(owner, "s-audited", "viewer", password="long enough pw")
    revoke_user(owner, "s-audited")
    rows = {r.action: r for r in _audit(owner, "user.add") + _audit(owner, "user.revoke") if r.target == "s-audited"}
    assert set(rows) == {"user.add", "user.revoke"} and rows["user.add"].ids == ["s-audited"]
    assert "long enough pw" not in str(rows["user.add"].details)


def test_password_file_path_default(tmp_path: Path, cli) -> None:  # noqa: ANN001
    r = cli("users", "init-admin")  # an admin exists (t-admin): nothing created, nothing written
    assert r.exit_code == 0 and "exists" in r.output and not (tmp_path / "initial-admin.txt").exists()


def test_the_api_role_cannot_write_accounts(api_db_url, tokens) -> None:  # noqa: ANN001
    """Accounts are written by `onemap users` (the owner); the server's role only reads them."""
    import psycopg

    from tests.db_support import API_URLS

    if api_db_url not in API_URLS:
        pytest.skip("no onemap_api role on this server")
    url = API_URLS[api_db_url].replace("postgresql+psycopg://", "postgresql://", 1)
    for statement in ("INSERT INTO api_users (name, role) VALUES ('evil', 'admin')",
                      "UPDATE api_users SET role = 'admin', password_hash = NULL",
                      "UPDATE api_tokens SET expires_at = NULL",
                      "DELETE FROM api_tokens"):
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
