"""RAFTKV_REQUIRE turns a skip of a test that must run on this machine into
a failed run."""

from required import required_but_skipped


def test_a_skipped_docker_test_is_reported_when_docker_is_required():
    skipped = [("tests/integration/test_docker.py::test_compose", "no Docker engine answers")]
    assert required_but_skipped(["docker"], skipped) == [
        "docker: tests/integration/test_docker.py::test_compose skipped: no Docker engine answers"]
    assert required_but_skipped(["browser"], skipped) == []


def test_an_opt_in_test_may_skip():
    skipped = [("tests/integration/test_hashicorp_mixed.py::test_snapshot",
                "takes minutes (hraftd snapshots every 120-240 s): set RAFTKV_MIXED_SNAPSHOT=1")]
    assert required_but_skipped(["hraftd"], skipped) == []


def test_an_unknown_capability_is_an_error():
    assert required_but_skipped(["gpu"], []) and "unknown" in required_but_skipped(["gpu"], [])[0]
