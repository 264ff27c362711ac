"""raftkv.client against live nodes: every call of Client and AsyncClient on
one 3-node cluster (with a cluster key) shared by the module, the leader
killed in the middle of 300 writes, the deadline's typed errors (no node
listening; every node frozen), and TLS on a one-node HTTPS cluster."""

from __future__ import annotations

import threading
import time

import pytest
from cluster import Cluster, free_port, wait_until
from test_tls import TlsCluster, make_certs

from raftkv.client import (
    AsyncClient,
    Client,
    NotApplied,
    NotFound,
    OutcomeUnknown,
    Timeout,
    TimeoutNotApplied,
    TimeoutOutcomeUnknown,
    TLSError,
    Unauthorized,
    Unavailable,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

KEY = "client library cluster key 0123456789"


@pytest.fixture(scope="module")
def kv_cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("client-cluster"), {"RAFT_CLUSTER_KEY": KEY})
    try:
        cluster.form(3, via_env_join=True)  # RAFT_JOIN sends the key
        yield cluster
    finally:
        cluster.close()


def addresses(cluster: Cluster) -> list[str]:
    return [n.http_addr for n in cluster.nodes.values() if n.id in ("n1", "n2", "n3")]


def healthy(cluster: Cluster) -> None:
    """Every member running and one leader: what each test leaves behind."""
    for node in cluster.nodes.values():
        if node.paused:
            node.resume()
    cluster.leader(timeout=30)


def test_every_call_of_the_sync_client(kv_cluster):
    with Client(addresses(kv_cluster), cluster_key=KEY) as kv:
        index = kv.set("colour", "teal")
        assert isinstance(index, int) and index > 0
        for level in ("none", "weak", "linearizable", "lease", "strong"):
            value = kv.get("colour", level=level)
            # a none read may be served before that node applied the write
            assert value == "teal" or (level == "none" and value is None), level
        assert kv.set("colour", "ochre") > index
        assert kv.get("colour") == "ochre"
        assert kv.delete("colour") is True
        assert kv.get("colour") is None
        assert kv.delete("colour") is False
        assert kv.set("wide", "é" * 200_000) and kv.get("wide") == "é" * 200_000  # a value over any URL

        st = kv.status()
        assert st["state"] == "Leader" and st["leader"]["id"] == st["id"]
        n3 = kv.status(kv_cluster["n3"].http_addr)
        assert n3["id"] == "n3"
        peers = kv.peers()
        assert {p["id"] for p in peers} == {"n1", "n2", "n3"} and all(p["http"] for p in peers)

        # leadership moves; the next calls find the new leader
        old = kv_cluster.leader()
        target = next(n for n in ("n1", "n2", "n3") if n != old.id)
        moved = kv.transfer_leadership(target)
        assert moved["transferred"] is True and moved["to"] == target
        wait_until(lambda: kv_cluster.leader().id == target, 15, what=f"{target} to lead")
        kv.set("after-transfer", "1")
        assert kv.status()["id"] == target

        # a fourth server joins (as a nonvoter), and leaves
        n4 = kv_cluster.add("n4").wait_ready()
        joined = kv.join("n4", n4.raft_addr, voter=False, http_address=n4.http_addr)
        assert joined["changed"] is True and joined["id"] == "n4"
        assert kv.join("n4", n4.raft_addr)["changed"] is False  # again: nothing to do
        assert "n4" in {p["id"] for p in kv.peers()}
        assert kv.remove_peer("n4")["removed"] is True
        with pytest.raises(NotFound) as caught:
            kv.remove_peer("n4")
        assert isinstance(caught.value, NotApplied) and caught.value.status == 404
        n4.stop()


async def test_every_call_of_the_async_client(kv_cluster):
    async with AsyncClient(addresses(kv_cluster), cluster_key=KEY) as kv:
        index = await kv.set("async", "one")
        assert index > 0
        for level in ("weak", "linearizable", "lease", "strong"):
            assert await kv.get("async", level=level) == "one"
        assert await kv.delete("async") is True
        assert await kv.get("async") is None
        assert (await kv.status())["state"] == "Leader"
        assert len(await kv.peers()) == 3
        old = kv_cluster.leader()
        assert (await kv.transfer_leadership())["from"] == old.id
        wait_until(lambda: kv_cluster.leader(exclude=(old.id,)), 15, what="another leader")
        assert await kv.set("async", "two") > index
        assert await kv.get("async") == "two"
        with pytest.raises(NotFound):
            await kv.remove_peer("nobody")
    assert kv._session is None  # closed by the async with


def test_admin_calls_need_the_cluster_key(kv_cluster):
    for key in (None, "not-the-cluster-key-0000000000"):
        with Client(addresses(kv_cluster), cluster_key=key, timeout=5) as kv:
            kv.set("open", "to all")  # the key-value calls stay open
            for call in (lambda: kv.join("n9", "127.0.0.1:1"), lambda: kv.remove_peer("n3"),
                         lambda: kv.transfer_leadership()):
                started = time.monotonic()
                with pytest.raises(Unauthorized) as caught:
                    call()
                assert time.monotonic() - started < 2  # refused at once, not retried
                assert isinstance(caught.value, NotApplied) and caught.value.status == 401
    assert {p["id"] for p in Client(addresses(kv_cluster)).peers()} == {"n1", "n2", "n3"}


def test_the_leader_killed_in_the_middle_of_300_writes(kv_cluster):
    healthy(kv_cluster)
    leader = kv_cluster.leader()
    acked: dict[str, int] = {}
    unknown: list[str] = []
    halfway = threading.Event()

    def kill_when_halfway():
        halfway.wait(60)
        leader.kill()
    killer = threading.Thread(target=kill_when_halfway, daemon=True)
    killer.start()
    with Client(addresses(kv_cluster), timeout=20) as kv:
        for i in range(300):
            key = f"crash-{i}"
            if i == 100:
                halfway.set()
            while key not in acked:
                try:
                    index = kv.set(key, f"v{i}")
                except OutcomeUnknown:
                    # the write reached the leader as it died: repeating this
                    # set is harmless (no one else writes the key)
                    unknown.append(key)
                    continue
                assert key not in acked
                acked[key] = index
        killer.join(10)
        assert not leader.running
        # each write acknowledged once, in order: a later write has a later index
        indexes = [acked[f"crash-{i}"] for i in range(300)]
        assert indexes == sorted(indexes) and len(set(indexes)) == 300
        # only writes in flight as the leader died (a few at most) may have an unknown outcome
        assert len(unknown) <= 5, unknown
        # and every one is there, read linearizably through the new leader
        new = kv_cluster.leader(exclude=(leader.id,))
        assert kv.status()["leader"]["id"] == new.id
        for i in range(300):
            assert kv.get(f"crash-{i}") == f"v{i}", i
    # the killed node comes back and holds them too
    leader.start().wait_ready()
    kv_cluster.wait_applied(max(indexes), [leader], timeout=30)
    assert all(leader.value(f"crash-{i}", stale=True) == f"v{i}" for i in range(0, 300, 7))
    healthy(kv_cluster)


def test_no_node_listening_is_a_timeout_that_applied_nothing():
    nowhere = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    with Client(nowhere, timeout=1.5) as kv:
        for call in (lambda: kv.set("k", "v"), lambda: kv.get("k")):
            started = time.monotonic()
            with pytest.raises(TimeoutNotApplied) as caught:
                call()
            assert 1.5 <= time.monotonic() - started < 3.5
            assert isinstance(caught.value, Timeout) and isinstance(caught.value, NotApplied)
            assert not isinstance(caught.value, OutcomeUnknown)
            assert isinstance(caught.value.last, Unavailable) and "refused" in str(caught.value)


async def test_no_node_listening_async():
    nowhere = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    async with AsyncClient(nowhere, timeout=1.5) as kv:
        started = time.monotonic()
        with pytest.raises(TimeoutNotApplied):
            await kv.set("k", "v")
        assert 1.5 <= time.monotonic() - started < 3.5


async def test_a_frozen_cluster_times_out_by_type(kv_cluster):
    """Every node SIGSTOPped: a write sent to the leader has an unknown
    outcome at the deadline; a read, or a write no node took, applied nothing."""
    healthy(kv_cluster)
    members = [kv_cluster[n] for n in ("n1", "n2", "n3")]
    kv = Client(addresses(kv_cluster), timeout=1.5)
    akv = AsyncClient(addresses(kv_cluster), timeout=1.5)
    try:
        kv.status()           # both clients know the leader
        await akv.status()
        for node in members:
            node.pause()
        started = time.monotonic()
        with pytest.raises(TimeoutOutcomeUnknown) as caught:
            kv.set("frozen", "sync")
        assert 1.5 <= time.monotonic() - started < 3.5
        assert isinstance(caught.value, Timeout) and isinstance(caught.value, OutcomeUnknown)
        with pytest.raises(TimeoutNotApplied):
            kv.get("frozen")
        with pytest.raises(TimeoutOutcomeUnknown):
            await akv.set("frozen", "async")
        with pytest.raises(TimeoutNotApplied):
            await akv.get("frozen")
    finally:
        for node in members:
            node.resume()
        await akv.close()
    healthy(kv_cluster)
    # the cluster works again; the frozen writes may or may not have happened
    with Client(addresses(kv_cluster)) as again:
        assert again.get("frozen") in (None, "sync", "async")
        again.set("thawed", "yes")
        assert again.get("thawed") == "yes"
    kv.close()


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    root = tmp_path_factory.mktemp("client-tls")
    cluster = TlsCluster(root, make_certs(root / "certs", "t1"))
    try:
        node = cluster.add("t1", bootstrap=True).wait_ready()
        wait_until(node.is_leader, 15, what="t1 to lead")
        yield cluster
    finally:
        cluster.close()


async def test_tls_with_the_cluster_ca(tls_node):
    node = tls_node["t1"]
    ca = tls_node.certs / "ca.pem"
    with Client(node.http_addr, cacert=ca) as kv:
        assert kv.addresses == [f"https://{node.http_addr}"]
        kv.set("secret", "kept")
        assert kv.get("secret") == "kept"
        assert kv.status()["id"] == "t1"
    async with AsyncClient(f"https://{node.http_addr}", cacert=str(ca)) as akv:
        assert await akv.get("secret", level="strong") == "kept"
        assert await akv.delete("secret") is True
    # without the CA the certificate is not trusted: said at once, not retried to the deadline
    with Client(f"https://{node.http_addr}", timeout=10) as kv:
        started = time.monotonic()
        with pytest.raises(TLSError):
            kv.get("secret")
        assert time.monotonic() - started < 5
    async with AsyncClient(f"https://{node.http_addr}", timeout=10) as akv:
        with pytest.raises(TLSError):
            await akv.set("secret", "x")
