"""Property-based tests over the OpenAPI document: no generated request may cause a 5xx.

Bounded: a few examples per operation (the whole file runs in well under two minutes on an idle
machine). /stream is excluded (an endless response)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.api_support import (  # noqa: F401
    api_db_url,
    api_settings,
    auth,
    tiles_dir,
    tokens,
)

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402


@pytest.fixture(scope="session")
def api_schema(api_settings, tokens):  # noqa: F811, ANN001, ANN201
    from api.app import create_app

    app = create_app(api_settings)
    return schemathesis.openapi.from_asgi("/api", app).exclude(path="/stream")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, tokens) -> None:  # noqa: F811, ANN001
    case.call_and_validate(headers=auth(tokens, "admin"), checks=[not_a_server_error])


def test_openapi_is_30(api_schema) -> None:  # noqa: ANN001
    assert api_schema.raw_schema["openapi"].startswith("3.0")
