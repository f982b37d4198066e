"""Issue 17, finding 3 in the browser: the viewer's and the big screen's sign-in form.

A real account (a password set with ``gis.accounts.add_user``) logs in through the form in
headless Debian Chromium: ``POST /auth/login``, the token kept in sessionStorage (not
localStorage), the signed-in UI (role on ``body[data-role]``, the badge naming the user, the
sign-out button); a wrong password shows the error; sign-out revokes the token on the server.
The big screen (no top bar) opens the form by itself. Pasting a token stays possible (the
planner-view tests in tests/test_viewer_browser.py sign in that way).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.api_support import make_settings, running_server
from tests.browser.pages import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1800)]

STEP_MS = 300_000
PASSWORD = "browser test password"

if not Path(CHROMIUM).exists():  # pragma: no cover - the Makefile installs it for `make test`
    pytest.skip(f"{CHROMIUM} not installed (make setup-test installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def account(api_db_url: str, tokens) -> str:  # noqa: ANN001
    from gis.accounts import add_user

    engine = sa.create_engine(api_db_url)
    try:
        add_user(engine, "b-operator", "operator", password=PASSWORD, ttl_s=False)
    finally:
        engine.dispose()
    return "b-operator"


@pytest.fixture(scope="module")
def server(api_db_url: str, tiles_dir: Path, account: str) -> Iterator[str]:
    with running_server(make_settings(api_db_url, tiles_dir)) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=120_000)
        yield b
        b.close()


def _page(browser, base: str, path: str):  # noqa: ANN001, ANN202
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    page.goto(base + path, wait_until="commit")
    # the HTML already says role=anonymous: wait until the sign-in controls are wired (auth.js)
    page.wait_for_function(
        "() => document.body && document.body.dataset.auth === 'ready' && document.body.dataset.role === 'anonymous'",
        polling=500)
    return context, page


def _fill(page, username: str, password: str) -> None:  # noqa: ANN001
    page.fill("#signin-username", username)
    page.fill("#signin-password", password)
    page.click("#signin-form button[type=submit]")


def test_log_in_and_out_through_the_form(server: str, browser, account: str) -> None:  # noqa: ANN001
    context, page = _page(browser, server, "/?lang=en")
    try:
        page.click("#signin-open")
        _fill(page, account, "not the password")
        page.wait_for_function("() => document.getElementById('signin-error').textContent.length > 0", polling=500)
        assert page.is_visible("#signin")  # still open, nothing stored
        assert page.evaluate("sessionStorage.getItem('onemap.session')") is None

        _fill(page, account, PASSWORD)
        page.wait_for_function("() => document.body.dataset.role === 'operator'", polling=500)
        assert not page.evaluate("document.getElementById('signin').open")
        assert account in page.text_content("#user-badge")
        assert page.is_visible("#signout") and not page.is_visible("#signin-open")
        token = page.evaluate("sessionStorage.getItem('onemap.session')")
        assert token and token.startswith("om_")
        assert page.evaluate("localStorage.getItem('onemap.token')") is None  # a login lives in this tab only
        h = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server}/auth/me", headers=h, timeout=30).json()["name"] == account

        page.click("#signout")
        page.wait_for_function("() => document.body.dataset.role === 'anonymous'", polling=500)
        assert page.evaluate("sessionStorage.getItem('onemap.session')") is None
        for _ in range(60):  # the logout request is sent as the UI signs out
            if httpx.get(f"{server}/auth/me", headers=h, timeout=30).status_code == 401:
                break
            page.wait_for_timeout(500)
        assert httpx.get(f"{server}/auth/me", headers=h, timeout=30).status_code == 401
    finally:
        context.close()


def test_big_screen_asks_for_an_account(server: str, browser, account: str) -> None:  # noqa: ANN001
    context, page = _page(browser, server, "/?mode=bigscreen&tour=off")
    try:
        page.wait_for_function("() => document.getElementById('signin').open", polling=500)
        _fill(page, account, PASSWORD)
        page.wait_for_function("() => document.body.dataset.role === 'operator'", polling=500)
        assert page.evaluate("sessionStorage.getItem('onemap.session')").startswith("om_")
    finally:
        context.close()


def test_a_pasted_token_still_signs_in(server: str, browser, tokens) -> None:  # noqa: ANN001
    context, page = _page(browser, server, "/")
    try:
        page.click("#signin-open")
        page.click("#signin-token-box summary")
        page.fill("#signin-token", tokens["viewer"])
        page.click("#signin-form button[type=submit]")
        page.wait_for_function("() => document.body.dataset.role === 'viewer'", polling=500)
        assert page.evaluate("localStorage.getItem('onemap.token')") == tokens["viewer"]  # kiosks keep it
    finally:
        context.close()
