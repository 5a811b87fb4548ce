"""Real database servers (PostgreSQL, Redis) for tests.

Tidal's PostgreSQL tests talk to a real PostgreSQL, never to a mock, and a
missing server is a failure, never a skip. This module gives the test session
one throw-away PostgreSQL cluster:

* :func:`find_postgres_bin` finds ``initdb``, ``pg_ctl`` and ``postgres``
  (``/usr/lib/postgresql/<version>/bin`` on Debian, else ``$PATH``) and
  installs the ``postgresql`` package with apt when they are missing.
* :func:`start_postgres` runs ``initdb`` in a fresh temporary directory and
  starts the server on a free port on 127.0.0.1 only, with durability off
  (``fsync``, ``synchronous_commit``, ``full_page_writes``) for speed, and
  creates the database ``tidal_test``.
* :func:`fresh_database` / :func:`drop_database` create and drop an empty
  database with a unique name, so tests are isolated from each other for the
  cost of one ``CREATE DATABASE`` (a few milliseconds).

The server is stopped and its directory removed by :meth:`PostgresServer.stop`,
which the ``pg_server`` fixture calls at the end of the session. In case the
session ends without running fixture finalizers, ``stop`` is also registered
with :mod:`atexit`, and a small watchdog process stops the server when the
test process disappears without running either (``SIGKILL``, a segfault).

initdb and postgres refuse to run as root. When the tests run as root, both run
as the ``postgres`` OS user (created by the Debian package) through
``runuser``, and the temporary directory is chowned to that user; otherwise
they run as the current user. Either way the database superuser is called
``postgres`` and every connection over TCP is trusted (loopback only).

Redis works the same way: :func:`start_redis` finds ``redis-server`` (or
installs the ``redis-server`` package with apt), runs it as a child process on
a free loopback port with persistence off (or with an append-only file in a
directory of the caller's, for restart tests), waits until it answers PING,
and stops it at the end of the session, at exit, or from its watchdog.
It can speak TLS only (with a CA and certificate made by
:func:`make_certificates`) and ask for a password. :func:`start_redis_cluster`
(in :mod:`redis_cluster_servers`) starts such servers in cluster mode —
three masters, optionally each with replicas, optionally all over TLS — and
joins them with ``redis-cli --cluster create``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from installing import apt_install
from ports import free_port
from psycopg import sql
from redis_cluster_servers import RedisClusterServers, start_redis_cluster
from redis_servers import (  # Redis's servers live there; importable from here too
    REDIS_APT_INSTALL,
    RedisServer,
    RedisUnavailable,
    find_redis_server,
    install_redis,
    make_certificates,
    start_redis,
)

__all__ = [
    "SUPERUSER",
    "DATABASE",
    "OS_USER",
    "APT_INSTALL",
    "SERVER_SETTINGS",
    "BINARIES",
    "PostgresUnavailable",
    "install_postgres",
    "find_postgres_bin",
    "PostgresServer",
    "start_postgres",
    "fresh_database",
    "drop_database",
    "free_port",
    "REDIS_APT_INSTALL",
    "RedisUnavailable",
    "install_redis",
    "find_redis_server",
    "RedisServer",
    "start_redis",
    "make_certificates",
    "RedisClusterServers",
    "start_redis_cluster",
]

SUPERUSER = "postgres"
"""Database superuser of the test cluster (``initdb -U``)."""

DATABASE = "tidal_test"
"""Database created at start; :attr:`PostgresServer.url` points at it."""

OS_USER = "postgres"
"""OS user that runs the server when the tests run as root."""

APT_INSTALL = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
    "apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 postgresql"
)
"""Shell command that installs the server binaries (prefixed with ``sudo -n`` unless root)."""

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "log_min_messages": "warning",
}
"""Appended to ``postgresql.conf``: loopback only, no durability (a test cluster
is thrown away), room for many pooled connections. ``port`` and
``unix_socket_directories`` are passed to ``pg_ctl start`` per start."""

BINARIES = ("initdb", "pg_ctl", "postgres")

_WATCHDOG = """
import os, shutil, subprocess, sys, time
parent, root, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
while os.getppid() == parent and os.path.isdir(root):
    time.sleep(0.5)
if os.path.isdir(root):
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    shutil.rmtree(root, ignore_errors=True)
"""
"""Run by a separate process: once the test process (its parent) is gone
while the server directory still exists, stop the server and remove it."""


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be found, installed or started. Tests fail with it; they never skip."""


# --------------------------------------------------------------------------- binaries


def _version_key(path: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> ``(15,)``; newest version sorts last."""
    return tuple(int(p) for p in re.findall(r"\d+", path.parent.name))


def _locate() -> Path | None:
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    for bindir in sorted(candidates, key=_version_key, reverse=True):
        if all((bindir / b).is_file() for b in BINARIES):
            return bindir
    on_path = shutil.which("initdb")
    if on_path is not None:
        bindir = Path(on_path).resolve().parent
        if all((bindir / b).is_file() for b in BINARIES):
            return bindir
    return None


def install_postgres() -> None:
    """Install the ``postgresql`` package with apt (through ``sudo -n`` unless root).

    Raises :class:`PostgresUnavailable` with apt's output when it fails.
    """
    apt_install(
        APT_INSTALL,
        "PostgreSQL",
        PostgresUnavailable,
        no_apt="PostgreSQL server binaries (initdb, pg_ctl, postgres) are missing and apt-get is not "
        "available to install them; install PostgreSQL so that initdb is on $PATH",
    )


def find_postgres_bin(install: bool = True) -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Prefers the newest ``/usr/lib/postgresql/<version>/bin``, then ``$PATH``.
    When none is found and ``install`` is true, installs PostgreSQL with apt
    (a minute or so) and looks again.
    """
    bindir = _locate()
    if bindir is None and install:
        install_postgres()
        bindir = _locate()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in /usr/lib/postgresql/*/bin or on $PATH"
        )
    return bindir


# --------------------------------------------------------------------------- server


def _as_server_user() -> list[str]:
    """Command prefix that runs a program as the user who owns the cluster."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root, but runuser (util-linux) is missing to run PostgreSQL as postgres")
    try:
        import pwd

        pwd.getpwnam(OS_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, but there is no OS user {OS_USER!r} to run PostgreSQL "
            "(the Debian postgresql package creates it)"
        ) from None
    return ["runuser", "-u", OS_USER, "--"]


def _reachable_by_others(path: Path) -> bool:
    """Whether every directory from / down to ``path`` may be traversed by any user."""
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [path, *path.parents])


def _make_root() -> Path:
    """A fresh temporary directory the server's OS user can use."""
    base = Path(tempfile.gettempdir()).resolve()
    if os.geteuid() == 0 and not _reachable_by_others(base):
        base = Path("/tmp")  # $TMPDIR is private to root; the postgres user could not reach it
    root = Path(tempfile.mkdtemp(prefix="tidal-pg-", dir=base))
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam(OS_USER)
        os.chown(root, user.pw_uid, user.pw_gid)
    return root


def _run(cmd: list[str], what: str, cwd: Path, timeout: float = 120) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise PostgresUnavailable(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )


@dataclass
class PostgresServer:
    """A running throw-away PostgreSQL cluster (see :func:`start_postgres`)."""

    bindir: Path
    root: Path
    port: int
    host: str = "127.0.0.1"
    user: str = SUPERUSER
    database: str = DATABASE
    _owner_pid: int = field(default_factory=os.getpid, repr=False)
    _watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``tidal_test`` database."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit psycopg connection as the superuser, for administration."""
        return psycopg.connect(host=self.host, port=self.port, user=self.user, dbname=database, autocommit=True)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _pg_ctl(self, *args: str) -> list[str]:
        return [*_as_server_user(), str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args]

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``) and remove its directory. Idempotent.

        Does nothing in a process forked from the one that started the server,
        so a forked child that exits normally cannot stop the session's server.
        """
        if self._stopped or os.getpid() != self._owner_pid:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self._watchdog is not None:
            self._watchdog.terminate()
            self._watchdog.wait()
        if self.datadir.exists():
            proc = subprocess.run(
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30"),
                cwd=self.root,
                capture_output=True,
                timeout=60,
                check=False,
            )
            if proc.returncode != 0:
                self._kill_postmaster()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """Last resort when ``pg_ctl stop`` fails: SIGKILL the pid in ``postmaster.pid``."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)


def start_postgres(bindir: Path | None = None, attempts: int = 5) -> PostgresServer:
    """Create and start a fresh cluster; see the module docstring.

    Installs PostgreSQL first if it is missing. Raises
    :class:`PostgresUnavailable` (with the server log) if it cannot start. The
    caller owns the result and must call :meth:`PostgresServer.stop` (it also
    runs at interpreter exit).
    """
    bindir = bindir or find_postgres_bin()
    root = _make_root()
    server = PostgresServer(bindir=bindir, root=root, port=0)
    try:
        server.socket_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(server.socket_dir, OS_USER, OS_USER)
        initdb = [
            *_as_server_user(),
            str(bindir / "initdb"),
            "-D",
            str(server.datadir),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        _run(initdb, "initdb", cwd=root)
        with open(server.datadir / "postgresql.conf", "a") as conf:
            conf.write("\n# tidal tests\n")
            conf.writelines(f"{k} = {v}\n" for k, v in SERVER_SETTINGS.items())
        _start(server, attempts)
        atexit.register(server.stop)
        server._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(root), *server._pg_ctl("stop", "-m", "immediate")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=root,
            start_new_session=True,
        )
        with server.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(server.database)))
    except BaseException:
        server.stop()
        raise
    return server


def _start(server: PostgresServer, attempts: int) -> None:
    """``pg_ctl start`` on a free port, retrying with another port if it was taken meanwhile."""
    for attempt in range(attempts):
        server.port = free_port()
        options = f"-p {server.port} -k {server.socket_dir}"
        cmd = server._pg_ctl("start", "-w", "-t", "60", "-l", str(server.logfile), "-o", options)
        proc = subprocess.run(
            cmd,
            cwd=server.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            start_new_session=True,  # a Ctrl-C in the terminal must not reach the server
        )
        if proc.returncode == 0:
            return
        log = server.log_tail()
        if "could not bind" in log and attempt + 1 < attempts:
            continue  # lost a race for the port
        raise PostgresUnavailable(
            f"pg_ctl start failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stdout}{proc.stderr}\n--- {server.logfile} ---\n{log}"
        )


# --------------------------------------------------------------------------- databases


def _database_name(name: str) -> str:
    """``test_foo[sqlite-1]`` -> ``t_test_foo_sqlite_1_<8 hex>``: unique, safe, at most 63 bytes."""
    stem = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:45]
    return f"t_{stem}_{uuid.uuid4().hex[:8]}"


def fresh_database(server: PostgresServer, name: str) -> str:
    """Create an empty database named after ``name`` (made unique) and return its SQLAlchemy URL."""
    database = _database_name(name)
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return server.url_for(database)


def drop_database(server: PostgresServer, url: str) -> None:
    """Drop the database of ``url`` (made by :func:`fresh_database`), closing any connections still open to it."""
    database = url.rsplit("/", 1)[1]
    with server.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
