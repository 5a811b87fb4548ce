"""The PostgreSQL test fixtures give a real, isolated, loopback-only server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import servers
from servers import PostgresServer, PostgresUnavailable
from sqlalchemy import create_engine, text


def test_pg_url_is_a_working_postgresql(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert conn.dialect.name == "postgresql"
            assert conn.execute(text("SHOW server_version")).scalar_one()
            conn.execute(text("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, tags jsonb)"))
            conn.execute(
                text("INSERT INTO items (name, tags) VALUES (:name, CAST(:tags AS jsonb))"),
                [{"name": "a", "tags": '["x"]'}, {"name": "b", "tags": "[]"}],
            )
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, name, tags FROM items ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "a", ["x"]), (2, "b", [])]
    finally:
        engine.dispose()


def test_each_pg_url_is_its_own_database(pg_server: PostgresServer, pg_url: str) -> None:
    other = servers.fresh_database(pg_server, "other")
    assert other != pg_url
    first, second = create_engine(pg_url), create_engine(other)
    try:
        with first.begin() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar_one() == pg_url.rsplit("/", 1)[1]
            conn.execute(text("CREATE TABLE only_here (x int)"))
        with second.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar_one() == other.rsplit("/", 1)[1]
            assert conn.execute(text("SELECT to_regclass('only_here')")).scalar_one() is None
    finally:
        first.dispose()
        second.dispose()
    servers.drop_database(pg_server, other)
    with pg_server.connect() as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert other.rsplit("/", 1)[1] not in names
    assert pg_url.rsplit("/", 1)[1] in names


def test_drop_database_closes_leftover_connections(pg_server: PostgresServer) -> None:
    url = servers.fresh_database(pg_server, "leftover")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))  # the pool keeps this connection open
        servers.drop_database(pg_server, url)
    finally:
        engine.dispose()


def test_session_database_url(pg_server: PostgresServer) -> None:
    assert pg_server.url == f"postgresql+psycopg://postgres@127.0.0.1:{pg_server.port}/tidal_test"
    engine = create_engine(pg_server.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == "postgres"
    finally:
        engine.dispose()


def _listeners(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_server_listens_only_on_loopback(pg_server: PostgresServer) -> None:
    with pg_server.connect() as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
    if sys.platform == "linux":
        assert _listeners(pg_server.port) == {"0100007F"}  # 127.0.0.1, and no IPv6 socket


def test_failed_install_raises_instead_of_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "_locate", lambda: None)
    monkeypatch.setattr(servers, "APT_INSTALL", "echo simulated apt failure >&2; exit 100")
    if os.geteuid() != 0:
        monkeypatch.setattr(servers.shutil, "which", lambda name: None if name == "sudo" else "/usr/bin/" + name)
    with pytest.raises(PostgresUnavailable):
        servers.find_postgres_bin()


@pytest.mark.slow
def test_server_stops_when_the_test_process_is_killed(tmp_path: Path) -> None:
    """The watchdog stops the server and removes its directory after a SIGKILL of its owner."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import servers
        server = servers.start_postgres()
        print(server.root, server.port, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        root, port = proc.stdout.readline().split()
        assert Path(root, "data").is_dir()
        assert _listeners(int(port))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    deadline = time.monotonic() + 30
    while (Path(root).exists() or _listeners(int(port))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(root).exists()
    assert not _listeners(int(port))
