"""All configuration, one small settings class per concern (environment variables prefixed ``ONEMAP_``).

Shape::

    settings = get_settings()          # cached; ConfigError naming the variable when one is invalid
    settings.db.database_url           # DatabaseSettings: where PostGIS is (external URL or var/pg)
    settings.api.max_page_size         # ApiSettings: bind address, CORS, limits, the API's DB pool, auth cache
    settings.tiles.tiles_dir           # TileSettings: built tilesets and how they are served
    settings.stream.sse_ring_size      # StreamSettings: the live stream (/stream)
    settings.paths.media_dir           # PathSettings: runtime state, sample delivery, static files
    settings.basemap.basemap_url       # BasemapSettings: optional online base map (off by default)
    settings.dispatch.road_end_snap_m  # DispatchSettings: availability, escalation, road graph, speeds

One rule for names: a field's environment variable is ``ONEMAP_<FIELD NAME>`` (so
``settings.api.api_pool_size`` is ``ONEMAP_API_POOL_SIZE``, ``settings.db.pg_port`` is
``ONEMAP_PG_PORT``). ``var_dir`` (``ONEMAP_VAR_DIR``) is the runtime root every group derives its
default folders from, so it appears in ``db``, ``tiles`` and ``paths`` (and as ``settings.var_dir``).
Folders that default under ``var_dir`` (``tiles_dir``, ``media_dir``, ``sample_dir``) are always
resolved to a path.

``Settings(**flat)`` accepts the flat field names (``Settings(var_dir=p, database_url=None,
pg_port=0)``) and routes each to its group(s); anything not given comes from the environment.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent

_PG_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class _Group(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONEMAP_", env_file=".env", extra="ignore")


class _VarDir(_Group):
    # Runtime state (embedded PostGIS cluster, built tiles, logs) lives here; never committed.
    var_dir: Path = Field(default=REPO_ROOT / "var")


class DatabaseSettings(_VarDir):
    """Where PostGIS is: ``database_url`` when set, else the embedded cluster under ``var_dir/pg``."""

    # When set, every command uses this PostGIS instead of the embedded cluster under var/pg.
    # It is the schema owner's URL (migrations, loaders, `onemap users`, `onemap db psql`).
    database_url: str | None = None
    # With database_url: the URL `onemap serve` connects with (role onemap_api, see `onemap db roles`).
    # Unset: database_url, which the server refuses when that role is a superuser or the schema owner.
    api_database_url: str | None = None
    # Let the server connect as a superuser or as the schema owner (never in production).
    allow_privileged_db_user: bool = False
    # Embedded cluster: TCP port on 127.0.0.1 (0 = pick a free one on first `db up`).
    pg_port: int = Field(default=0, ge=0, le=65535)
    pg_database: str = "onemap"
    pg_bin_dir: Path = Path("/usr/lib/postgresql/15/bin")
    # System user that owns the embedded cluster when onemap runs as root.
    pg_os_user: str = Field(default="postgres", min_length=1)

    @field_validator("database_url", "api_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # ONEMAP_DATABASE_URL= (empty) means "not set"
        value = value.strip()
        if not value.startswith(_PG_SCHEMES):
            scheme = value.split("://", 1)[0] if "://" in value else value[:20]
            raise ValueError(
                f"must be a PostgreSQL URL (postgresql://user@host:port/db), got scheme {scheme!r}"
            )
        return value

    @field_validator("pg_database")
    @classmethod
    def _database_name(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError(f"must be a plain database name (letters, digits, _; at most 63), got {value!r}")
        return value

    @property
    def pg_dir(self) -> Path:
        return self.var_dir / "pg"

    @property
    def secrets_file(self) -> Path:
        """Generated passwords of the embedded cluster's roles (0600, see gis/dbsecrets.py)."""
        return self.pg_dir / "secrets.json"


class ApiSettings(_Group):
    """The HTTP API: bind address, CORS, request limits, its database pool, caches."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000", "http://localhost:8000"])
    anonymous_collections: list[str] = Field(
        default_factory=lambda: ["buildings", "communities", "grid_cells", "cameras", "checkpoints"]
    )
    max_page_size: int = Field(default=10_000, gt=0)
    default_page_size: int = Field(default=100, gt=0)
    max_bbox_area_km2: float = Field(default=400.0, gt=0)
    max_body_bytes: int = Field(default=5_000_000, gt=0)
    # Geometries in request bodies / CQL2 filters: at most this many vertices.
    max_geometry_vertices: int = Field(default=10_000, gt=0)
    # POST /gps/fixes: at most this many fixes per batch.
    max_gps_batch: int = Field(default=5_000, gt=0)
    # Database access from the API: pool size, how long to wait for a pooled connection,
    # per-statement timeout (0 = none), and the Retry-After (s) sent with 503 while PostGIS is unreachable.
    api_pool_size: int = Field(default=10, gt=0)
    api_pool_overflow: int = Field(default=20, ge=0)
    api_pool_timeout_s: float = Field(default=10.0, gt=0)
    api_connect_timeout_s: int = Field(default=5, gt=0)
    api_statement_timeout_ms: int = Field(default=30_000, ge=0)
    db_retry_after_s: int = Field(default=5, ge=0)
    # Bearer-token lookups are cached this long (s; 0 = no cache); a revoked token stops working within it.
    auth_cache_s: float = Field(default=10.0, ge=0)
    # Token lifetimes (s; 0 = never expire): people's (login, `users add`) and devices' (`users token`).
    token_ttl_s: float = Field(default=8 * 3600.0, ge=0)
    device_token_ttl_s: float = Field(default=365 * 86400.0, ge=0)
    # POST /auth/login: this many failures for one user or from one address within the window -> 429.
    login_max_failures: int = Field(default=5, gt=0)
    login_window_s: float = Field(default=300.0, gt=0)
    # Events reported by devices: reported_at at most this far (s) from the server's clock, else 422.
    event_clock_skew_s: float = Field(default=300.0, gt=0)
    # OGC API collection extents are recomputed at most this often (s).
    extent_cache_s: float = Field(default=300.0, ge=0)
    # --- abuse limits (docs/security.md) ---
    # Heavy analytics (/analytics/*): at most this many run at once per process, a request waits
    # at most analytics_queue_s for a slot (then 429 + Retry-After); one token may run at most
    # analytics_per_token at once (429 + Retry-After); a request estimated above
    # analytics_max_cost (geometry tests, see gis/cost.py) is refused with 400.
    analytics_concurrency: int = Field(default=4, gt=0)
    analytics_per_token: int = Field(default=2, gt=0)
    analytics_queue_s: float = Field(default=10.0, ge=0)
    analytics_max_cost: float = Field(default=1.5e7, gt=0)
    # Request rate per token (anonymous: per client address), token bucket: sustained rate (per s)
    # and burst; 0 = off. Static files and tiles are not counted.
    rate_limit_per_s: float = Field(default=30.0, ge=0)
    rate_limit_burst: int = Field(default=300, ge=1)
    # Open /stream connections per token (anonymous: per address).
    max_streams_per_token: int = Field(default=4, gt=0)
    # --- browser side ---
    # Absolute links (OGC links, next pages) are built from public_url when set (the address
    # users reach, e.g. https://onemap.example.cn behind the TLS proxy); otherwise from the
    # request's Host, which must then be one of trusted_hosts (else 400; "*" trusts any).
    public_url: str | None = None
    trusted_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]", "testserver"])
    # CSP frame-ancestors: who may frame the viewer ('none'; or e.g. "'self' https://portal.example.cn").
    frame_ancestors: str = "'none'"
    referrer_policy: str = "no-referrer"

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~\-/]*)?$", value):
            raise ValueError(f"must be an absolute http(s) URL without query, got {value!r}")
        return value

    @field_validator("trusted_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        bad = [h for h in value if h != "*" and not re.match(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_*]+)$", h)]
        if bad:
            raise ValueError(f"host names only (no scheme, port or path): {bad}")
        return [h.lower() for h in value]

    @field_validator("frame_ancestors")
    @classmethod
    def _frame_ancestors(cls, value: str) -> str:
        tokens = value.split()
        ok = re.compile(r"^('none'|'self'|https?://[A-Za-z0-9.\-*]+(:\d+)?|https?:)$")
        if not tokens or any(not ok.match(t) for t in tokens) or ("'none'" in tokens and len(tokens) > 1):
            raise ValueError("'none', or sources like 'self' https://portal.example.cn (space separated)")
        return " ".join(tokens)

    @field_validator("referrer_policy")
    @classmethod
    def _referrer(cls, value: str) -> str:
        allowed = ("no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin")
        if value not in allowed:
            raise ValueError(f"one of {', '.join(allowed)}")
        return value

    @model_validator(mode="after")
    def _page_sizes(self) -> Self:
        if self.default_page_size > self.max_page_size:
            raise ValueError(
                f"default_page_size ({self.default_page_size}) must not exceed "
                f"max_page_size ({self.max_page_size})"
            )
        return self


class TileSettings(_VarDir):
    """Built tilesets (output of `onemap tiles build`) and how `onemap serve` serves them."""

    # Default: var_dir/tiles (always resolved after validation).
    tiles_dir: Path | None = None
    # In-memory cache (bytes) of file contents + their gzip; files bigger than
    # tile_cache_max_file_bytes are streamed from disk; Cache-Control max-age for tiles and for
    # the JSON entry points (tileset.json, layer.json, index.json).
    tile_cache_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    tile_cache_max_file_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    tile_max_age_s: int = Field(default=3600, ge=0)
    tile_json_max_age_s: int = Field(default=60, ge=0)
    gzip_min_bytes: int = Field(default=512, ge=0)
    # ONEMAP_DASK_SCHEDULER: where partitioned tile pipelines run (docs/scale.md): an existing
    # Dask scheduler (tcp://host:8786), local:N (a LocalCluster of N worker processes), or empty
    # (in this process). `--dask` overrides it.
    dask_scheduler: str = ""

    @field_validator("dask_scheduler")
    @classmethod
    def _dask_address(cls, v: str) -> str:
        v = v.strip()
        if v and not re.fullmatch(r"local:[1-9]\d*|(tcp|tls|inproc|ucx)://\S+", v):
            raise ValueError(f"{v!r} is not a Dask scheduler address: tcp://host:8786 or local:N")
        return v

    @model_validator(mode="after")
    def _resolve(self) -> Self:
        if self.tiles_dir is None:
            self.tiles_dir = self.var_dir / "tiles"
        return self


class StreamSettings(_Group):
    """The live stream (/stream): heartbeat interval (s), per-client queue bound (messages; a client
    that falls this far behind is disconnected and resumes with Last-Event-ID), replay ring size
    (messages), LISTEN channel, reconnect back-off bounds (s)."""

    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    sse_client_queue: int = Field(default=1000, gt=0)
    sse_ring_size: int = Field(default=5000, gt=0)
    sse_channel: str = "onemap"
    sse_reconnect_min_s: float = Field(default=0.5, gt=0)
    sse_reconnect_max_s: float = Field(default=10.0, gt=0)

    @field_validator("sse_channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError(f"must be a plain LISTEN channel name (letters, digits, _; at most 63), got {value!r}")
        return value

    @model_validator(mode="after")
    def _backoff(self) -> Self:
        if self.sse_reconnect_min_s > self.sse_reconnect_max_s:
            raise ValueError(
                f"sse_reconnect_min_s ({self.sse_reconnect_min_s}) must not exceed "
                f"sse_reconnect_max_s ({self.sse_reconnect_max_s})"
            )
        return self


class PathSettings(_VarDir):
    """Folders: the sample delivery (`make run`), camera test clips (/media), the CesiumJS build (/cesium)."""

    # Defaults: var_dir/sample and var_dir/media (always resolved after validation).
    sample_dir: Path | None = None
    media_dir: Path | None = None
    cesium_dir: Path = Field(default=REPO_ROOT / "node_modules" / "cesium" / "Build" / "Cesium")
    # Swagger UI files (npm swagger-ui-dist) served at /swagger for the offline /docs page.
    swagger_ui_dir: Path = Field(default=REPO_ROOT / "node_modules" / "swagger-ui-dist")
    # Community targets (GET /analytics/targets, gis/targets.py): the YAML targets file.
    targets_file: Path = Field(default=REPO_ROOT / "data" / "targets" / "jiefang.yaml")

    @model_validator(mode="after")
    def _resolve(self) -> Self:
        if self.sample_dir is None:
            self.sample_dir = self.var_dir / "sample"
        if self.media_dir is None:
            self.media_dir = self.var_dir / "media"
        return self


class BasemapSettings(_Group):
    """An optional online base map for deployments with internet (off by default: no request
    leaves the host). ``basemap_url`` is a tile URL template: XYZ (``{z}/{x}/{y}``, Cesium
    UrlTemplateImageryProvider; ``{s}`` subdomains from ``basemap_subdomains``) or WMTS REST
    (``{TileMatrix}/{TileRow}/{TileCol}``, with ``basemap_layer``/``basemap_style``/
    ``basemap_tile_matrix_set``). ``{key}`` in the template is replaced by ``basemap_key`` (a
    browser key, e.g. a national map service's ``tk``: it is sent to the browser)."""

    basemap_url: str | None = None
    basemap_key: str | None = None
    basemap_scheme: str = "WebMercatorQuad"  # or WorldCRS84Quad (geographic)
    basemap_max_level: int = Field(default=18, ge=0, le=24)
    basemap_subdomains: str = ""  # e.g. "01234567"
    basemap_layer: str = ""
    basemap_style: str = "default"
    basemap_tile_matrix_set: str = ""
    basemap_credit: str = ""

    @field_validator("basemap_url")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL template")
        if not ("{z}" in value or "{TileMatrix}" in value):
            raise ValueError("needs {z}/{x}/{y} (XYZ) or {TileMatrix}/{TileRow}/{TileCol} (WMTS)")
        return value

    @field_validator("basemap_scheme")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value not in ("WebMercatorQuad", "WorldCRS84Quad"):
            raise ValueError("must be WebMercatorQuad or WorldCRS84Quad")
        return value

    def client_config(self) -> dict[str, Any] | None:
        """What the viewer needs (None when no online base map is configured)."""
        if not self.basemap_url:
            return None
        url = self.basemap_url.replace("{key}", self.basemap_key or "")
        return {
            "kind": "wmts" if "{TileMatrix}" in url else "xyz", "url": url, "scheme": self.basemap_scheme,
            "maximumLevel": self.basemap_max_level, "subdomains": self.basemap_subdomains,
            "layer": self.basemap_layer, "style": self.basemap_style,
            "tileMatrixSetID": self.basemap_tile_matrix_set, "credit": self.basemap_credit,
        }


class DispatchSettings(_Group):
    """Dispatch over the road network (gis/dispatch.py, gis/routing.py, api/routes/dispatch.py).

    - ``dispatch_fix_max_age_s``: a worker whose newest fix is older is not available (300 s)
    - ``dispatch_busy_window_h``: a worker is busy with an open dispatch only this long after it
      (12 h; older open cases are stale, not today's work)
    - ``dispatch_escalation_interval_s``: how often each server process raises missed-deadline
      alarms (30 s)
    - ``dispatch_walk_kmh`` / ``dispatch_drive_kmh``: the speeds of road classes without their own
      ``road_speed`` row (its ``*`` row, set at every graph rebuild; 5 / 20 km/h). Grid workers
      walk, vehicles drive.
    - ``road_end_snap_m``: road ends closer than this to another road end or road are joined
      before noding (2 m; 0 = off), see ``road_graph_rebuild()`` (migration 0008_road_snap)
    """

    dispatch_fix_max_age_s: float = Field(default=300.0, gt=0, le=86400)
    dispatch_busy_window_h: float = Field(default=12.0, gt=0, le=24 * 30)
    dispatch_escalation_interval_s: float = Field(default=30.0, gt=0, le=3600)
    dispatch_walk_kmh: float = Field(default=5.0, gt=0, le=30)
    dispatch_drive_kmh: float = Field(default=20.0, gt=0, le=200)
    road_end_snap_m: float = Field(default=2.0, ge=0, le=50)

    @model_validator(mode="after")
    def _speeds(self) -> Self:
        if self.dispatch_walk_kmh > self.dispatch_drive_kmh:
            raise ValueError(
                f"dispatch_walk_kmh ({self.dispatch_walk_kmh}) must not exceed "
                f"dispatch_drive_kmh ({self.dispatch_drive_kmh})"
            )
        return self


class Settings:
    """Every settings group, read from the environment; ``Settings(**flat_overrides)`` for tests/tools."""

    GROUPS: ClassVar[dict[str, type[_Group]]] = {
        "db": DatabaseSettings, "api": ApiSettings, "tiles": TileSettings,
        "stream": StreamSettings, "paths": PathSettings, "basemap": BasemapSettings,
        "dispatch": DispatchSettings,
    }
    db: DatabaseSettings
    api: ApiSettings
    tiles: TileSettings
    stream: StreamSettings
    paths: PathSettings
    basemap: BasemapSettings
    dispatch: DispatchSettings

    def __init__(self, **overrides: Any) -> None:
        per_group: dict[str, dict[str, Any]] = {name: {} for name in self.GROUPS}
        given: dict[str, _Group] = {}
        for key, value in overrides.items():
            if key in self.GROUPS:
                if not isinstance(value, self.GROUPS[key]):
                    raise TypeError(f"Settings({key}=...) must be a {self.GROUPS[key].__name__}")
                given[key] = value
                continue
            owners = [name for name, cls in self.GROUPS.items() if key in cls.model_fields]
            if not owners:
                raise TypeError(f"unknown setting {key!r}")
            for name in owners:
                per_group[name][key] = value
        for name, cls in self.GROUPS.items():
            setattr(self, name, given.get(name) or cls(**per_group[name]))

    @property
    def var_dir(self) -> Path:
        return self.paths.var_dir

    def replace(self, **groups: _Group) -> Settings:
        """A copy with some groups swapped: ``s.replace(tiles=s.tiles.model_copy(update={...}))``."""
        return Settings(**{name: groups.get(name, getattr(self, name)) for name in self.GROUPS})

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.GROUPS) + ")"


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad value, naming its environment variable."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        if loc:
            parts.append(f"ONEMAP_{loc[0].upper()}={err.get('input')!r}: {msg}")
        else:
            parts.append(msg)
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """``Settings(**overrides)``, with an invalid value reported as :class:`ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid settings: {describe_validation_error(exc)}",
            hint="fix the ONEMAP_* environment variable (or .env)",
        ) from exc


@lru_cache
def get_settings() -> Settings:
    return load_settings()
