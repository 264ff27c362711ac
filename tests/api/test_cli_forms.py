"""The raftkv command line without a cluster: where --addr may go, and help
texts a terminal can show (defaults named, no reST markup)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from raftkv.cli.main import DEFAULT_ADDR, _resolve_addr, build_parser


def parsed(argv: list[str], monkeypatch, env_addr: str | None = None):
    if env_addr is None:
        monkeypatch.delenv("RAFTKV_ADDR", raising=False)
    else:
        monkeypatch.setenv("RAFTKV_ADDR", env_addr)
    args = build_parser().parse_args(argv)
    _resolve_addr(args)
    return args


@pytest.mark.parametrize("argv", [
    ["--addr", "http://10.0.0.1:8000", "get", "k"],
    ["get", "k", "--addr", "http://10.0.0.1:8000"],
    ["get", "--addr", "http://10.0.0.1:8000", "k"],
])
def test_addr_before_or_after_the_subcommand(argv, monkeypatch):
    args = parsed(argv, monkeypatch, env_addr="http://from-env:8000")
    assert (args.command, args.key, args.addr) == ("get", "k", "http://10.0.0.1:8000")


def test_addr_after_the_subcommand_wins_then_env_then_default(monkeypatch):
    args = parsed(["--addr", "http://a:1", "status", "--addr", "http://b:2"], monkeypatch)
    assert args.addr == "http://b:2"
    assert parsed(["status"], monkeypatch, env_addr="http://from-env:8000").addr == "http://from-env:8000"
    assert parsed(["peers"], monkeypatch).addr == DEFAULT_ADDR
    assert parsed(["--addr", "http://a:1", "bench", "-d", "1"], monkeypatch).addr == "http://a:1"
    assert parsed(["bench", "-d", "1"], monkeypatch, env_addr="http://from-env:8000").addr == \
        "http://from-env:8000"


def test_get_prints_the_value_unless_json(monkeypatch):
    assert parsed(["get", "k"], monkeypatch).json is False
    assert parsed(["get", "k", "--json"], monkeypatch).json is True


def _help(*argv: str) -> str:
    r = subprocess.run([sys.executable, "-m", "raftkv", *argv, "--help"], capture_output=True, text=True,
                       timeout=60, env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r
    return " ".join(r.stdout.split())  # unwrapped


def test_sim_help_is_plain_text():
    text = _help("sim")
    assert "``" not in text and "raftkv sim --list" in text
    assert "(default: 100)" in text


def test_serve_help_names_the_defaults():
    text = _help("serve")
    for shown in ("HTTP API port (default: 8000) [env HTTP_SERVER_PORT]",
                  "(default: 9000) [env RAFT_SERVER_PORT]",
                  "(default: 127.0.0.1) [env BIND_ADDR]",
                  "(default: 1s) [env RAFT_HEARTBEAT_TIMEOUT]",
                  "(default: 500ms) [env RAFT_LEADER_LEASE_TIMEOUT]",
                  "(default: 2m0s) [env RAFT_SNAPSHOT_INTERVAL]",
                  "(default: 10s) [env RAFT_SERVER_STABILIZATION_TIME]",
                  "(default: 1MiB) [env HTTP_MAX_BODY]",
                  "(default: 32MiB) [env RAFT_SNAPSHOT_LOG_BYTES]",
                  "(default: false) [env RAFT_BOOTSTRAP]",
                  "(default: INFO) [env LOG_LEVEL]"):
        assert shown in text, shown
    assert "None" not in text
    assert "(default: ./raftkv-data/<node id>) [env RAFT_VOLUME_DIR]" in text
    # no default shown for a secret or for settings without one
    assert "token [env RAFT_CLUSTER_KEY]" in text and "every server of the cluster) [env RAFT_JOIN]" in text
