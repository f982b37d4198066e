"""One error hierarchy: core.errors → HTTP status (api/errors.py) and → CLI exit code (onemap/cli.py)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from api.errors import BadRequest, Conflict, NotFound, Unauthorized, headers_for, status_for
from core.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    InputError,
    LimitExceededError,
    NotFoundError,
    OnemapError,
    PermissionDeniedError,
    UnavailableError,
)


@pytest.mark.parametrize(("exc", "status"), [
    (InputError("x"), 400), (AuthenticationError("x"), 401), (PermissionDeniedError("x"), 403),
    (NotFoundError("x"), 404), (ConflictError("x"), 409), (LimitExceededError("x"), 413),
    (LimitExceededError("x", retry_after_s=4), 429), (UnavailableError("x"), 503), (ConfigError("x"), 500),
    (OnemapError("x"), 500), (BadRequest("x"), 400), (NotFound("x"), 404), (Conflict("x"), 409),
])
def test_status_table(exc: OnemapError, status: int) -> None:
    assert status_for(exc) == status


def test_domain_errors_map_to_their_core_class() -> None:
    from core.delivery.errors import SourceError
    from gis.cluster import ClusterError
    from gis.lifecycle import IllegalTransition
    from pipelines.dem import DemError
    from pipelines.pointcloud import PointCloudError

    assert status_for(ClusterError("down")) == 503
    assert status_for(IllegalTransition("closed", "reported", ())) == 409
    assert status_for(SourceError("a.gpkg", "bad file")) == 400
    for cls in (DemError, PointCloudError):
        assert status_for(cls("bad file")) == 400


def test_headers() -> None:
    assert headers_for(Unauthorized(), 5) == {"WWW-Authenticate": 'Bearer realm="onemap"'}
    assert headers_for(UnavailableError("x"), 5) == {"Retry-After": "5"}
    assert headers_for(LimitExceededError("x", retry_after_s=7), 5) == {"Retry-After": "7"}
    assert headers_for(LimitExceededError("x"), 5) == {}


def test_cli_error_exits_1_with_message_and_hint_usage_exits_2() -> None:
    from onemap.cli import app

    r = CliRunner().invoke(app, ["db", "destroy"])
    assert r.exit_code == 1
    assert "error: this deletes every row in the embedded cluster" in r.output and "hint: pass --yes" in r.output
    assert "Traceback" not in r.output
    assert CliRunner().invoke(app, ["db", "destroy", "--no-such-option"]).exit_code == 2
