"""The one error hierarchy of onemap.

Every error a user can act on derives from :class:`OnemapError`. Library code (gis, pipelines,
tiles, core) raises these; the two edges translate them once:

* the HTTP API maps each class to a status in ``api/errors.py`` (one table);
* the CLI prints the message (and its hint) and exits with 1 (``onemap/cli.py``); usage
  errors (bad options) exit with 2.

Messages say what is wrong and where (file, feature, field, parameter); ``hint`` says what to do.
"""

from __future__ import annotations

from typing import Any


class OnemapError(Exception):
    """Root of every onemap error. ``hint`` is an actionable next step; ``extra`` is structured context."""

    def __init__(self, message: str, *, hint: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.extra = extra

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(OnemapError):
    """Bad input from a user: a delivery file, a request parameter, a body, an option value."""


class NotFoundError(OnemapError):
    """The thing asked for does not exist (a row, a file, a collection)."""


class ConflictError(OnemapError):
    """The request clashes with the current state (duplicate id, illegal lifecycle transition)."""


class AuthenticationError(OnemapError):
    """No or invalid credentials."""


class PermissionDeniedError(OnemapError):
    """Authenticated, but this identity may not do this."""


class LimitExceededError(OnemapError):
    """A request over a configured budget (size, rate, cost). ``retry_after_s`` when waiting helps."""

    def __init__(self, message: str, *, retry_after_s: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class UnavailableError(OnemapError):
    """A service onemap depends on (PostGIS, a worker) cannot be reached right now; retrying may help."""


class ConfigError(OnemapError):
    """The installation or settings are wrong (missing geoid grid, bad setting value, missing binary)."""
