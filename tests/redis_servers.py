"""Real Redis servers for tests: one server (plain, TLS-only, with a
password, with an append-only file for restart tests, or a node in cluster
mode for :mod:`redis_cluster_servers`), on a free loopback port, stopped at
the end of the session, at exit, or by a watchdog when the test process
disappears. See :mod:`servers` (which re-exports these) for the rules every
test server follows.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from installing import apt_install
from ports import free_port

if TYPE_CHECKING:
    import redis

REDIS_APT_INSTALL = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
    "apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 redis-server"
)
"""Shell command that installs ``redis-server`` (prefixed with ``sudo -n`` unless root)."""

_REDIS_WATCHDOG = """
import os, shutil, signal, sys, time
parent, root = int(sys.argv[1]), sys.argv[2]
while os.getppid() == parent and os.path.isdir(root):
    time.sleep(0.5)
if os.path.isdir(root):
    try:
        with open(os.path.join(root, "server.pid")) as f:
            os.kill(int(f.read()), signal.SIGKILL)
    except (OSError, ValueError):
        pass
    shutil.rmtree(root, ignore_errors=True)
"""
"""Run by a separate process: once the test process (its parent) is gone
while the server's directory still exists, kill the server (whose pid
:meth:`RedisServer.start` keeps in ``server.pid``) and remove the directory."""


class RedisUnavailable(RuntimeError):
    """redis-server could not be found, installed or started. Tests fail with it; they never skip."""


def install_redis() -> None:
    """Install the ``redis-server`` package with apt (through ``sudo -n`` unless root).

    Raises :class:`RedisUnavailable` with apt's output when it fails.
    """
    apt_install(
        REDIS_APT_INSTALL,
        "redis-server",
        RedisUnavailable,
        no_apt="redis-server is missing and apt-get is not available to install it",
    )


def _locate_redis() -> Path | None:
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def find_redis_server(install: bool = True) -> Path:
    """The ``redis-server`` binary; installed with apt first when missing and ``install`` is true."""
    binary = _locate_redis()
    if binary is None and install:
        install_redis()
        binary = _locate_redis()
    if binary is None:
        raise RedisUnavailable("redis-server not found on $PATH, in /usr/bin or in /usr/local/bin")
    return binary


@dataclass
class RedisServer:
    """A running throw-away ``redis-server`` (see :func:`start_redis`)."""

    binary: Path
    root: Path
    datadir: Path
    port: int
    appendonly: bool = False
    appendfsync: str = "everysec"
    """When the append-only file is fsynced: ``everysec``, or ``always`` (every
    write is on disk before its reply is sent) for tests of acknowledged writes."""
    host: str = "127.0.0.1"
    tls: Path | None = None
    """Folder of the throw-away CA and server certificate (:func:`make_certificates`):
    the server then speaks TLS only, on :attr:`port` (and, in cluster mode,
    on its cluster bus and to its master too)."""
    password: str | None = field(default=None, repr=False)
    """``--requirepass``, when set."""
    cluster_bus_port: int = 0
    """Non-zero: the server runs in cluster mode, its cluster bus on this port."""
    cluster_node_timeout_ms: int = 5000
    """``--cluster-node-timeout``: how long a node may not answer before the
    others take it for failed (and its replica, if any, takes over)."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _owner_pid: int = field(default_factory=os.getpid, repr=False)
    _watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def logfile(self) -> Path:
        return self.root / "redis.log"

    def url(self, db: int = 0) -> str:
        """``redis://host:port/db`` of this server (``rediss://``, and
        ``:password@``, as it was started)."""
        scheme = "rediss" if self.tls is not None else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{db}"

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signed a TLS server's certificate."""
        if self.tls is None:
            raise ValueError("this redis-server was started without TLS")
        return self.tls / "ca.pem"

    def connect(self, **kwargs: object) -> redis.Redis:
        """A plain redis-py client of this server (TLS and password as it was started)."""
        import redis

        options: dict[str, object] = {"host": self.host, "port": self.port, "password": self.password}
        if self.tls is not None:
            options.update(ssl=True, ssl_ca_certs=str(self.ca_file))
        return redis.Redis(**{**options, **kwargs})  # type: ignore[arg-type]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--bind",
            self.host,
            *self._listen_args(),
            "--daemonize",
            "no",
            "--dir",
            str(self.datadir),
            "--logfile",
            str(self.logfile),
            *(["--requirepass", self.password] if self.password else []),
            *self._cluster_args(),
        ]

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.tls / "server.pem"),
            "--tls-key-file",
            str(self.tls / "server.key"),
            "--tls-ca-cert-file",
            str(self.tls / "ca.pem"),
            "--tls-auth-clients",
            "no",
        ]

    def _cluster_args(self) -> list[str]:
        if not self.cluster_bus_port:
            return []
        # The bus port is chosen, not port + 10000: a free port above 55535 has none.
        return [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.datadir / "nodes.conf"),
            "--cluster-port",
            str(self.cluster_bus_port),
            "--cluster-node-timeout",
            str(self.cluster_node_timeout_ms),
            # A replica's first sync starts at once, not after 5 s of waiting for others to share it.
            "--repl-diskless-sync-delay",
            "0",
            # Over TLS, the bus between the nodes and the link of a replica
            # to its master are TLS too, with the same certificate and CA.
            *(["--tls-cluster", "yes", "--tls-replication", "yes"] if self.tls is not None else []),
        ]

    def kill(self) -> None:
        """SIGKILL the server (as a crash would), keeping its directory; :meth:`start` brings it back."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def shutdown(self) -> None:
        """Stop the server cleanly (``SIGTERM``), keeping its directory; :meth:`start` brings it back."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)

    def start(self, attempts: int = 5) -> None:
        """Start (or restart, on the same port when it is still free) and wait until PING answers."""
        import redis

        for attempt in range(attempts):
            if not self.port or attempt:
                self.port = free_port()
            if self.cluster_bus_port and attempt:
                self.cluster_bus_port = free_port()
            with open(self.root / "redis.stderr", "wb") as stderr:
                self.process = subprocess.Popen(
                    self.command(),
                    cwd=self.root,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=True,  # a Ctrl-C in the terminal must not reach the server
                )
            (self.root / "server.pid").write_text(str(self.process.pid))
            client = self.connect(socket_timeout=1.0)
            deadline = time.monotonic() + 30
            try:
                while time.monotonic() < deadline:
                    if self.process.poll() is not None:
                        break
                    try:
                        if client.ping():
                            return
                    except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                        time.sleep(0.02)
            finally:
                client.close()
            if self.process.poll() is None:
                self.kill()
                raise RedisUnavailable(f"redis-server did not answer PING within 30 s\n{self.log_tail()}")
            err = (self.root / "redis.stderr").read_text(errors="replace")
            log = self.log_tail()
            if "Address already in use" in log + err and attempt + 1 < attempts:
                continue  # lost a race for the port
            raise RedisUnavailable(
                f"redis-server exited with {self.process.returncode}: {' '.join(self.command())}\n{err}\n{log}"
            )

    def stop(self) -> None:
        """Stop the server and remove its private directory. Idempotent.

        Does nothing in a process forked from the one that started the server.
        """
        if self._stopped or os.getpid() != self._owner_pid:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        self.shutdown()
        if self._watchdog is not None:
            self._watchdog.terminate()
            self._watchdog.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_redis(
    datadir: Path | None = None,
    *,
    appendonly: bool = False,
    port: int = 0,
    appendfsync: str = "everysec",
    tls: bool | Path = False,
    password: str | None = None,
    cluster: bool = False,
    cluster_node_timeout_ms: int = 5000,
) -> RedisServer:
    """Start a ``redis-server`` on a free port of 127.0.0.1 and wait until it answers.

    By default nothing is persisted (``--save "" --appendonly no``) and the
    data directory is a fresh temporary one. For restart tests, pass
    ``appendonly=True`` and a ``datadir`` of your own: the append-only file
    lives there and survives :meth:`RedisServer.kill` / :meth:`RedisServer.start`
    and :meth:`RedisServer.stop` (which removes only the server's private
    directory with its log); ``appendfsync="always"`` puts every write on
    disk before the server answers it.

    ``tls=True``: the server speaks TLS only, with a certificate for
    127.0.0.1 signed by a CA made for it (:attr:`RedisServer.ca_file`);
    clients need not show one. ``tls=folder``: the same with the certificates
    that :func:`make_certificates` made there (so that several servers trust
    each other). ``password``: ``--requirepass``.
    ``cluster=True``: a node in cluster mode with ``cluster_node_timeout_ms``,
    not in a cluster yet (see :func:`~redis_cluster_servers.start_redis_cluster`).

    Installs redis-server with apt first if it is missing. The caller owns the
    result and must call :meth:`RedisServer.stop` (it also runs at interpreter
    exit, and a watchdog kills the server if the test process dies first).
    """
    binary = find_redis_server()
    root = Path(tempfile.mkdtemp(prefix="tidal-redis-"))
    server = RedisServer(
        binary=binary,
        root=root,
        datadir=datadir or root,
        port=port,
        appendonly=appendonly,
        appendfsync=appendfsync,
        password=password,
        cluster_bus_port=free_port() if cluster else 0,
        cluster_node_timeout_ms=cluster_node_timeout_ms,
    )
    try:
        if isinstance(tls, Path):
            server.tls = tls
        elif tls:
            server.tls = make_certificates(root / "tls")
        server.datadir.mkdir(parents=True, exist_ok=True)
        server.start()
        atexit.register(server.stop)
        server._watchdog = subprocess.Popen(
            [sys.executable, "-c", _REDIS_WATCHDOG, str(os.getpid()), str(root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=root,
            start_new_session=True,
        )
    except BaseException:
        server.stop()
        raise
    return server


def make_certificates(folder: Path, host: str = "127.0.0.1") -> Path:
    """A throw-away CA (``ca.pem``) and a certificate it signed for ``host``
    (``server.pem``, key ``server.key``) in ``folder``, made with the
    ``openssl`` command (the ``cryptography`` package is not a dependency).
    The certificate serves as a client's too: the nodes of a TLS cluster
    show it to each other on the cluster bus, where Redis always asks for one.
    Raises :class:`RedisUnavailable` when openssl is missing or fails."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RedisUnavailable("openssl is missing: it makes the TLS test server's certificates (apt install openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (folder / "server.ext").write_text(
        f"subjectAltName=IP:{host},DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    ca = ["req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Tidal test CA"]
    request = ["req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={host}"]
    sign = ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
    sign += ["-out", "server.pem", "-days", "2", "-extfile", "server.ext"]
    for step in (ca, request, sign):
        proc = subprocess.run([openssl, *step], cwd=folder, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RedisUnavailable(f"openssl {' '.join(step)} failed (exit {proc.returncode}):\n{proc.stderr}")
    return folder
