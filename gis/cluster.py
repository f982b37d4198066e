"""The embedded PostGIS: a private PostgreSQL 15 cluster under ``var/pg`` that onemap starts itself.

Layout (all under ``settings.var_dir``):

    var/pg/data/        the cluster (owned by the cluster's OS user)
    var/pg/run/         its Unix socket directory (0700: no other OS user reaches the socket)
    var/pg/postgres.log server log
    var/pg/cluster.json port and database name chosen at first ``up``
    var/pg/secrets.json generated passwords (0600, the OS user onemap runs as; gis/dbsecrets.py)

Every ``pg_hba.conf`` line asks for a password (SCRAM-SHA-256; no ``trust``, no ``peer``), so
another local account can neither reach the socket nor log in over TCP. The superuser
``postgres`` is used only here, to administer the cluster; commands connect as ``onemap_owner``
and ``onemap serve`` as ``onemap_api`` (gis/db.py, gis/sql/roles/roles.sql). A cluster created by
an earlier version with ``initdb -A trust`` is upgraded by ``up``: passwords set, ``pg_hba.conf``
rewritten and reloaded, objects handed to ``onemap_owner``.

PostgreSQL refuses to run as root. When onemap runs as root, the cluster belongs to the
``postgres`` system user (Debian's packages create it) and every server binary is run through
``runuser``; otherwise it belongs to the current user. With ``ONEMAP_DATABASE_URL`` set, none of
this is used.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from core.errors import UnavailableError
from core.settings import DatabaseSettings, Settings
from gis import dbsecrets
from gis.dbroles import apply_roles

log = logging.getLogger(__name__)


class ClusterError(UnavailableError, RuntimeError):
    """The embedded cluster could not be initialised, started or reached (HTTP 503, CLI exit 1)."""


@dataclass(frozen=True)
class ClusterStatus:
    initialised: bool
    running: bool
    port: int | None
    database: str
    data_dir: Path
    postgis_version: str | None = None
    server_version: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "initialised": self.initialised,
            "running": self.running,
            "port": self.port,
            "database": self.database,
            "data_dir": str(self.data_dir),
            "postgis_version": self.postgis_version,
            "server_version": self.server_version,
        }


#: pg_hba.conf of the embedded cluster: a password on every line, whatever the OS user.
PG_HBA = """\
# onemap embedded cluster: every connection needs its role's password (var/pg/secrets.json).
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  scram-sha-256
host    all          all   127.0.0.1/32   scram-sha-256
host    all          all   ::1/128        scram-sha-256
local   replication  all                  scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
"""


def hba_is_secure(text: str) -> bool:
    """True when every rule of a pg_hba.conf text asks for a SCRAM password."""
    rules = [line.split("#", 1)[0].split() for line in text.splitlines()]
    rules = [r for r in rules if r]
    return bool(rules) and all(r[-1] == "scram-sha-256" for r in rules)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedCluster:
    def __init__(self, settings: DatabaseSettings | Settings):
        if isinstance(settings, Settings):
            settings = settings.db
        self.settings = settings
        self.root = settings.pg_dir
        self.data_dir = self.root / "data"
        self.run_dir = self.root / "run"
        self.log_file = self.root / "postgres.log"
        self.state_file = self.root / "cluster.json"
        self.secrets_file = settings.secrets_file
        self.hba_file = self.data_dir / "pg_hba.conf"
        self.bin_dir = settings.pg_bin_dir

    # -- helpers -----------------------------------------------------------------------------
    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _os_user(self) -> pwd.struct_passwd:
        if not self._as_root:
            return pwd.getpwuid(os.geteuid())
        try:
            return pwd.getpwnam(self.settings.pg_os_user)
        except KeyError as exc:
            raise ClusterError(
                f"running as root but OS user {self.settings.pg_os_user!r} does not exist; "
                "install postgresql-15-postgis-3 (creates it) or set ONEMAP_PG_OS_USER"
            ) from exc

    def _bin(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            raise ClusterError(
                f"{path} not found: install PostgreSQL 15 + PostGIS 3 "
                "(`apt-get install postgresql-15-postgis-3`, done by `make setup`) or set ONEMAP_PG_BIN_DIR"
            )
        return str(path)

    def _run(self, args: list[str], check: bool = True, input: str | None = None  # noqa: A002
             ) -> subprocess.CompletedProcess[str]:
        if self._as_root:
            args = ["runuser", "-u", self.settings.pg_os_user, "--", *args]
        log.debug("run %s", " ".join(args))
        proc = subprocess.run(args, capture_output=True, text=True, cwd="/", input=input)
        if check and proc.returncode != 0:
            detail = proc.stderr.strip() or proc.stdout.strip()
            raise ClusterError(f"{' '.join(args)} failed ({proc.returncode}): {detail}")
        return proc

    def _state(self) -> dict[str, object]:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {}

    @property
    def port(self) -> int | None:
        port = self._state().get("port")
        return int(port) if port else None

    @property
    def database(self) -> str:
        return str(self._state().get("database", self.settings.pg_database))

    def url(self, driver: str = "postgresql+psycopg", role: str = dbsecrets.OWNER,
            database: str | None = None) -> str:
        """URL of ``database`` (default the onemap one) as ``role`` (``onemap_owner``,
        ``onemap_api`` or ``postgres``), its password from the secrets file."""
        port = self.port
        if port is None:
            raise ClusterError(f"the embedded cluster in {self.root} is not initialised: run `onemap db up`")
        password = dbsecrets.read_secrets(self.secrets_file)[role]
        return f"{driver}://{role}:{quote(password, safe='')}@127.0.0.1:{port}/{database or self.database}"

    def admin_url(self, database: str = "postgres") -> str:
        """libpq URL of the cluster's superuser (cluster administration only)."""
        return self.url("postgresql", dbsecrets.SUPERUSER, database)

    def _check_traversable(self, user: pwd.struct_passwd) -> None:
        """Every parent of var/pg must be searchable by the cluster's OS user."""
        path = self.root.resolve()
        for parent in [*reversed(path.parents)]:
            mode = parent.stat().st_mode
            if self._as_root and not mode & 0o001 and parent.stat().st_uid != user.pw_uid:
                raise ClusterError(
                    f"{parent} is not searchable by OS user {user.pw_name}: the cluster lives in {self.root}; "
                    f"`chmod o+x {parent}` or set ONEMAP_VAR_DIR to a folder it can reach"
                )

    # -- lifecycle ---------------------------------------------------------------------------
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialised():
            return False
        proc = self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "status"], check=False)
        return proc.returncode == 0

    def init(self) -> None:
        user = self._os_user()
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_traversable(user)
        for d in (self.root, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, user.pw_uid, user.pw_gid)
            d.chmod(0o700)
        passwords = dbsecrets.ensure_secrets(self.secrets_file)
        if self.initialised():
            return
        log.info("initialising PostgreSQL cluster in %s", self.data_dir)
        port = self.settings.pg_port or free_port()
        # the superuser's password reaches initdb through a 0600 file of the cluster's OS user
        pwfile = self.run_dir / ".initdb-pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(passwords[dbsecrets.SUPERUSER] + "\n")
        os.chown(pwfile, user.pw_uid, user.pw_gid)
        try:
            self._run([
                self._bin("initdb"), "-D", str(self.data_dir), "-A", "scram-sha-256", "-U", dbsecrets.SUPERUSER,
                f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions",
            ])
        finally:
            pwfile.unlink(missing_ok=True)
        self._write_hba()
        conf = self.data_dir / "postgresql.conf"
        extra = (
            "\n# --- onemap embedded cluster ---\n"
            f"port = {port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.run_dir}'\n"
            "unix_socket_permissions = 0700\n"
            "password_encryption = 'scram-sha-256'\n"
            "max_connections = 200\n"
            "shared_buffers = 512MB\n"
            "work_mem = 32MB\n"
            "maintenance_work_mem = 512MB\n"
            "effective_cache_size = 4GB\n"
            "max_wal_size = 4GB\n"
            "synchronous_commit = on\n"
            "fsync = on\n"
            "jit = off\n"
            "timezone = 'UTC'\n"
            "log_min_messages = warning\n"
        )
        self._run(["sh", "-c", f"cat >> '{conf}' <<'EOF'\n{extra}EOF"])
        self.state_file.write_text(json.dumps({"port": port, "database": self.settings.pg_database}, indent=2))

    def start(self) -> None:
        if self.running():
            return
        port = self.port
        if port is not None and not _port_free(port):
            raise ClusterError(
                f"port {port} of the embedded cluster is taken by another process; stop it or "
                f"remove {self.root} to re-initialise on a free port"
            )
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            log.warning("removing stale %s", stale)
            self._run(["rm", "-f", str(stale)])
        self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60", "start"])

    def stop(self) -> None:
        if self.running():
            self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])

    def _write_hba(self) -> None:
        self._run(["sh", "-c", f"cat > '{self.hba_file}'"], input=PG_HBA)

    def hba_secure(self) -> bool:
        proc = self._run(["cat", str(self.hba_file)])
        return hba_is_secure(proc.stdout)

    def secure(self) -> bool:
        """Upgrade a running cluster created with ``initdb -A trust`` (earlier versions): set the
        superuser's password while ``trust`` still lets us in, then rewrite ``pg_hba.conf`` (a
        password on every line), make the socket directory private and reload. True if it did."""

        self.run_dir.chmod(0o700)
        self.root.chmod(0o700)
        if self.hba_secure():
            return False
        log.warning("embedded cluster %s accepts connections without a password: securing it", self.data_dir)
        password = dbsecrets.ensure_secrets(self.secrets_file)[dbsecrets.SUPERUSER]
        trusting = f"postgresql://{dbsecrets.SUPERUSER}@127.0.0.1:{self.port}/postgres"
        with _connect(trusting) as conn:
            conn.execute(f"ALTER ROLE {dbsecrets.SUPERUSER} PASSWORD '{password}'")  # URL-safe: no quote
            conn.execute("ALTER SYSTEM SET password_encryption = 'scram-sha-256'")
            conn.execute("ALTER SYSTEM SET unix_socket_permissions = '0700'")
            self._write_hba()
            conn.execute("SELECT pg_reload_conf()")
        return True

    def ensure_database(self) -> None:
        """Create the onemap database (first time), then (every time) its roles, their passwords,
        ownership and PostGIS as the superuser: ``gis/sql/roles/roles.sql``."""
        passwords = dbsecrets.read_secrets(self.secrets_file)
        with _connect(self.admin_url()) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        self.prepare_database(self.database, passwords)

    def prepare_database(self, database: str, passwords: dict[str, str] | None = None) -> None:
        """Roles, grants on the database, ownership and PostGIS for ``database`` of this cluster."""
        passwords = passwords or dbsecrets.read_secrets(self.secrets_file)
        apply_roles(self.admin_url(), database, passwords[dbsecrets.OWNER], passwords[dbsecrets.API])

    def up(self) -> None:
        self.init()
        self.start()
        self.secure()
        self.ensure_database()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _connect(url: str):  # noqa: ANN202 - psycopg.Connection
    """An autocommit connection, retrying for 30 s while a just-started server comes up."""
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            if "password authentication failed" in str(exc):
                raise ClusterError(f"the embedded cluster refused the password in the secrets file: {exc}",
                                   hint="restore var/pg/secrets.json, or `onemap db destroy --yes`") from exc
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``. SO_REUSEADDR as PostgreSQL sets it: connections
    left in TIME_WAIT by the previous server (``db down`` then ``db up``) do not make the port taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
