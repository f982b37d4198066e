"""Property-based tests over the OpenAPI document: no generated request may cause a 5xx.

Bounded: a few examples per operation (the whole file runs in well under two minutes on an idle
machine). /stream is excluded (an endless response)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.api_support import auth

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(api_settings, tokens):  # noqa: ANN001, ANN201
    from api.app import create_app

    app = create_app(api_settings)
    return schemathesis.openapi.from_asgi("/api", app).exclude(path="/stream")


def test_no_server_errors(api_schema, tokens) -> None:  # noqa: ANN001
    """Every operation, a few generated requests each (as admin), none answered with a 5xx."""
    headers = auth(tokens, "admin")
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=6, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:  # noqa: ANN001
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collect all operations' failures
            failures.append(f"{op.method.upper()} {op.path}: {str(exc).splitlines()[0][:300]}")
    assert not failures, "\n".join(failures)


def test_openapi_is_30(api_schema) -> None:  # noqa: ANN001
    assert api_schema.raw_schema["openapi"].startswith("3.0")


#: strings PostgreSQL or Python cannot hold: NUL, a lone surrogate and invalid UTF-8 (percent-encoded)
BAD_STRINGS = ("%00", "a%00b", "%ED%A0%80", "%FF", "%C0%80")


def test_nul_and_invalid_unicode_never_5xx(api_settings, tokens) -> None:  # noqa: ANN001
    """Every operation's every string query/path parameter given each bad string: 400, never 5xx."""
    import re

    from fastapi.testclient import TestClient

    from api.app import create_app

    app = create_app(api_settings)
    schema = app.openapi()
    failures: list[str] = []
    with TestClient(app) as c:
        for path, item in schema["paths"].items():
            if path == "/stream":
                continue
            for method, op in item.items():
                if method not in ("get", "post", "patch"):
                    continue
                params = [p for p in op.get("parameters", []) if p["in"] in ("query", "path")]
                for p in params:
                    for bad in BAD_STRINGS:
                        url = re.sub(r"\{[^}]+\}", "x", path)
                        if p["in"] == "path":
                            url = path.replace("{" + p["name"] + "}", bad)
                            url = re.sub(r"\{[^}]+\}", "x", url)
                        else:
                            url = f"{url}?{p['name']}={bad}"
                        r = c.request(method.upper(), url, headers=auth(tokens, "admin"))
                        if r.status_code >= 500 or (r.status_code != 400 and "%00" in bad):
                            failures.append(f"{method.upper()} {url}: {r.status_code}")
                if "requestBody" in op:
                    r = c.request(method.upper(), re.sub(r"\{[^}]+\}", "x", path),
                                  content=b'{"description": "\\u0000", "x": "\\udc00"}',
                                  headers={**auth(tokens, "admin"), "content-type": "application/json"})
                    if r.status_code != 400:
                        failures.append(f"{method.upper()} {path} body: {r.status_code}")
    assert not failures, "\n".join(failures[:30])
