"""RAFTKV_REQUIRE: capabilities a run must exercise, and which skipped tests
mean one of them was missing (used by tests/conftest.py)."""

from __future__ import annotations

# RAFTKV_REQUIRE names: which skipped tests count as that capability missing
_CAPABILITIES = {
    "docker": lambda nodeid, reason: "test_docker" in nodeid,
    "browser": lambda nodeid, reason: "chromium" in reason or "playwright" in reason,
    "firefox": lambda nodeid, reason: "firefox" in reason,
    "netns": lambda nodeid, reason: nodeid.startswith("tests/netns/"),
    "hraftd": lambda nodeid, reason: "hraftd" in nodeid or "hashicorp_mixed" in nodeid,
    "tmpfs": lambda nodeid, reason: "tmpfs" in reason,
}


def _opt_in(reason: str) -> bool:
    """A test left out on purpose until an env variable asks for it."""
    return "RAFTKV_" in reason and "=1" in reason


def required_but_skipped(required: list[str], skipped: list[tuple[str, str]]) -> list[str]:
    unknown = [name for name in required if name not in _CAPABILITIES]
    if unknown:
        known = ", ".join(_CAPABILITIES)
        return [f"RAFTKV_REQUIRE names unknown capabilities: {', '.join(unknown)} (known: {known})"]
    return [f"{name}: {nodeid} skipped: {reason}" for nodeid, reason in skipped if not _opt_in(reason)
            for name in required if _CAPABILITIES[name](nodeid, reason)]
