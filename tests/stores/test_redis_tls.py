"""The Redis store over TLS (``rediss://``), against a real redis-server that
speaks TLS only, with a certificate signed by a CA made for the test
(tests/servers.py): the store's three kinds of connection (the client's
pool, the hot path's own per thread, the version cache's tracking one) all
verify the server and authenticate; a wrong password or an unverifiable
certificate fails at once, with the URL in the message and no password.
And a Redis Cluster whose nodes speak TLS only (to clients, on the cluster
bus, to their masters): ``rediss://…?cluster=1&ssl_ca_certs=…`` reaches
every node over TLS, an App runs on it, and a certificate that does not
verify fails the opening."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from servers import RedisClusterServers, RedisServer, make_certificates, start_redis, start_redis_cluster

from tidal.exceptions import ConfigError, StoreError
from tidal.stores import from_url
from tidal.stores.redis import RedisClusterStore, RedisStore

from .cluster_slots import spread
from .counters import count_in_threads, counter_app

C = "Comp"
PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def tls_server() -> Iterator[RedisServer]:
    server = start_redis(tls=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_password_server() -> Iterator[RedisServer]:
    server = start_redis(tls=True, password=PASSWORD)
    yield server
    server.stop()


def store_url(server: RedisServer, *, password: str | None = None, verify: bool = True) -> str:
    """``rediss://[:password@]127.0.0.1:port/0?ssl_ca_certs=…&namespace=…``, a namespace of its own."""
    auth = f":{password}@" if password else ""
    query = f"ssl_ca_certs={quote(str(server.ca_file), safe='')}&" if verify else ""
    return f"rediss://{auth}{server.host}:{server.port}/0?{query}namespace=tls_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def url(tls_server: RedisServer) -> str:
    return store_url(tls_server)


def test_url_parameters_reach_redis_py(url: str, tls_server: RedisServer) -> None:
    store = from_url(url + "&socket_timeout=7")
    assert isinstance(store, RedisStore)
    try:
        pool = store.client.connection_pool
        assert pool.connection_class is redis.SSLConnection
        assert pool.connection_kwargs["ssl_ca_certs"] == str(tls_server.ca_file)
        assert float(pool.connection_kwargs["socket_timeout"]) == 7
        assert store.namespace.startswith("tls_")
    finally:
        store.close()
    with pytest.raises(ConfigError, match="bad Redis store URL"):
        from_url(url + "&socket_timeout=soon")


def test_a_store_over_tls_queues_claims_commits_and_reads(url: str) -> None:
    store, other = from_url(url), from_url(url)
    assert isinstance(store, RedisStore) and isinstance(other, RedisStore)
    try:
        assert store.create_instance(C, "i1", {"a": b"A"}) == (True, 1)
        assert store.commit(C, "i1", {"b": b"B"}) == 2
        ids = [store.enqueue(C, "i1", "f", f"p{k}".encode()) for k in range(3)]
        held = store.claim([C], "w", 30, 10)
        assert held is not None and list(held.op_ids) == ids
        assert [op.payload for op in held.ops] == [b"p0", b"p1", b"p2"]
        assert store.commit(C, "i1", {"a": b"A2"}, deleted=["b"], claim=held, done=held.op_ids) == 3
        assert store.pending(C, "i1") == 0
        read = store.read_state(C, "i1", since=1)
        assert read is not None and (read.version, read.changed, read.deleted) == (3, {"a": b"A2"}, ("b",))

        # The version cache: read once, then kept fresh by the server's
        # invalidation, which arrives over the tracking connection's TLS.
        assert store.get_version(C, "i1") == 3
        assert store.get_version(C, "i1") == 3
        assert store.versions.tracking
        other.commit(C, "i1", {"a": b"A3"})
        assert store.get_version(C, "i1") == 4
        assert isinstance(store.versions.connection, redis.SSLConnection)
        # The hot path's per-thread connection speaks TLS too.
        direct = store.calls.direct.connections()
        assert direct and all(isinstance(conn, redis.SSLConnection) for conn in direct)
    finally:
        store.close()
        other.close()


def test_a_version_changed_elsewhere_is_seen_at_once_over_tls(url: str) -> None:
    reader, writer = from_url(url), from_url(url)
    try:
        writer.create_instance(C, "v", {"n": b"0"})
        for expected in range(2, 40):
            writer.commit(C, "v", {"n": str(expected).encode()})
            assert reader.get_version(C, "v") == expected
    finally:
        reader.close()
        writer.close()


def test_an_app_runs_updates_over_tls(url: str, tmp_path: Path) -> None:
    app, Counter = counter_app(url, tmp_path / "home", name="tls", worker_threads=2)
    try:
        counters = [Counter(f"c{k}") for k in range(3)]
        count_in_threads(counters, 30)
        assert [c.run("get") for c in counters] == [30, 30, 30]
    finally:
        app.close()


def test_a_password_protected_server_over_tls(tls_password_server: RedisServer) -> None:
    store = from_url(store_url(tls_password_server, password=PASSWORD))
    try:
        store.create_instance(C, "i1", {"a": b"A"})
        store.enqueue(C, "i1", "f", b"x")  # the hot path's own connection authenticates
        held = store.claim([C], "w", 30, 10)
        assert held is not None
        store.commit(C, "i1", {"a": b"B"}, claim=held, done=held.op_ids)
        assert store.get_version(C, "i1") == 2  # and the tracking one
        assert store.versions.tracking and isinstance(store.versions.connection, redis.SSLConnection)
        assert all(isinstance(conn, redis.SSLConnection) for conn in store.calls.direct.connections())
        assert "***" in repr(store) and PASSWORD not in repr(store)
    finally:
        store.close()


@pytest.mark.parametrize("password", ["wrong-pw", None])
def test_a_wrong_or_missing_password_is_a_clear_error_without_the_password(
    tls_password_server: RedisServer, password: str | None
) -> None:
    url = store_url(tls_password_server, password=password)
    store = from_url(url)
    try:
        calls = {
            "create_instance": lambda: store.create_instance(C, "i1", {"a": b"A"}),
            "get_version": lambda: store.get_version(C, "i1"),
            "enqueue": lambda: store.enqueue(C, "i1", "f", b"x"),
            "claim": lambda: store.claim([C], "w", 30, 10),
        }
        for verb, call in calls.items():
            with pytest.raises(StoreError) as caught:
                call()
            message = str(caught.value)
            assert f"rediss://{':***@' if password else ''}127.0.0.1:{tls_password_server.port}/0" in message, verb
            assert "password" in message.lower() or "auth" in message.lower(), message
            assert "wrong-pw" not in message and PASSWORD not in message
    finally:
        store.close()


def test_an_unverifiable_certificate_fails_at_once(tls_server: RedisServer) -> None:
    """Without ``ssl_ca_certs`` the server's certificate is checked against
    the system's CAs, which never signed it: each call fails, quickly."""
    store = from_url(store_url(tls_server, verify=False))
    try:
        for call in (
            lambda: store.create_instance(C, "i1", {"a": b"A"}),
            lambda: store.get_version(C, "i1"),
            lambda: store.enqueue(C, "i1", "f", b"x"),
        ):
            start = time.monotonic()
            with pytest.raises(StoreError, match=r"rediss://127\.0\.0\.1:\d+/0.*certificate verify failed"):
                call()
            assert time.monotonic() - start < 5
    finally:
        store.close()


# -- a cluster over TLS ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[RedisClusterServers]:
    cluster = start_redis_cluster(tls=True)
    yield cluster
    cluster.stop()


def cluster_url(cluster: RedisClusterServers, ca: Path | None) -> str:
    """``rediss://127.0.0.1:port/0?[ssl_ca_certs=ca&]namespace=…&cluster=1``, a namespace of its own."""
    query = f"ssl_ca_certs={quote(str(ca), safe='')}&" if ca is not None else ""
    return f"{cluster.url()}?{query}namespace=tlsc_{uuid.uuid4().hex[:8]}&cluster=1"


def test_a_cluster_store_reaches_every_node_over_tls(tls_cluster: RedisClusterServers) -> None:
    store = from_url(cluster_url(tls_cluster, tls_cluster.ca_file))
    assert isinstance(store, RedisClusterStore)
    try:
        primaries = store.client.get_primaries()  # type: ignore[attr-defined]
        assert sorted(node.port for node in primaries) == sorted(node.port for node in tls_cluster.nodes)
        names = spread(store, per_node=1)
        for name in names:  # a call to each node
            assert store.create_instance("Comp", name, {"a": b"A"}) == (True, 1)
            assert store.commit("Comp", name, {"a": b"B"}) == 2
            assert store.get_version("Comp", name) == 2
        for node in primaries:
            pool = node.redis_connection.connection_pool
            assert pool.connection_class is redis.SSLConnection
            assert pool.connection_kwargs["ssl_ca_certs"] == str(tls_cluster.ca_file)
        for server in tls_cluster.nodes:  # and no node has a port without TLS to answer on
            with server.connect() as client:
                assert client.config_get("port") == {"port": "0"}
                assert client.config_get("tls-cluster") == {"tls-cluster": "yes"}
    finally:
        store.close()


def test_an_app_runs_updates_on_a_cluster_over_tls(tls_cluster: RedisClusterServers, tmp_path: Path) -> None:
    url = cluster_url(tls_cluster, tls_cluster.ca_file)
    app, Counter = counter_app(url, tmp_path / "home", name="tlsc", worker_threads=2)
    try:
        assert isinstance(app.store, RedisClusterStore)
        counters = [Counter(name) for name in spread(app.store, per_node=1, component="Counter")]
        count_in_threads(counters, 25)
        assert [c.run("get") for c in counters] == [25, 25, 25]
    finally:
        app.close()


@pytest.mark.parametrize("ca", ["none", "another CA", "no such file"])
def test_a_cluster_whose_certificate_does_not_verify_fails_to_open(
    tls_cluster: RedisClusterServers, tmp_path: Path, ca: str
) -> None:
    """Without ``ssl_ca_certs`` (the system's CAs), with a CA that signed
    nothing of the cluster's, or with no file at that path: the store does
    not open, and says why, quickly."""
    ca_file = {
        "none": None,
        "another CA": make_certificates(tmp_path / "other") / "ca.pem",
        "no such file": tmp_path / "missing.pem",
    }[ca]
    url = cluster_url(tls_cluster, ca_file)
    start = time.monotonic()
    with pytest.raises(StoreError, match=r"cannot open the Redis Cluster at 'rediss://127\.0\.0\.1:\d+/0") as caught:
        from_url(url)
    assert time.monotonic() - start < 5
    reason = "No such file" if ca == "no such file" else "certificate verify failed"
    assert reason in str(caught.value)
