"""Fixtures of the network-namespace tests: a :class:`NetCluster` per test,
always torn down (namespaces, links, processes), with a timeline of the
operations and faults written to the test's tmp dir when it fails.

Every test here skips, with the reason, where ``ip netns add`` fails (not
root, no CAP_SYS_ADMIN, no iproute2). The long versions of the unreliable
scenarios run with ``RAFTKV_NETNS_LONG=1``.
"""

from __future__ import annotations


import pytest

from raftkv.chaos.netns import NetCluster, cleanup_stale, namespaces_available, write_timeline


_why_not: str | None | bool = False


def _namespaces_reason() -> str | None:
    global _why_not
    if _why_not is False:
        _why_not = namespaces_available()
        if _why_not is None:
            cleanup_stale()
    return _why_not


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def make_cluster(tmp_path, request):
    """make_cluster(size, env=None, seed=None) -> a created (not formed) NetCluster."""
    why = _namespaces_reason()
    if why:
        pytest.skip(f"network namespaces unavailable here ({why}); these tests need root and `ip netns`")
    made: list[NetCluster] = []

    def make(size: int = 3, env: dict | None = None, seed: int | None = None) -> NetCluster:
        cluster = NetCluster(tmp_path / f"cluster{len(made)}", size, env=env, seed=seed)
        made.append(cluster)
        return cluster.create()

    yield make
    rep = getattr(request.node, "rep_call", None)
    for cluster in made:
        if rep is not None and rep.failed:
            path = write_timeline(cluster, cluster.root / "timeline.html", title=request.node.nodeid)
            print(f"\ntimeline of the failed run: {path}")
            for node in cluster.nodes.values():
                print(f"\n===== {node.id} ({node.log_path}) =====\n{node.log()[-3000:]}")
        cluster.close()
