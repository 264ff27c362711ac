"""NodeSettings from environment variables and `raftkv serve` flags."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftkv.config.settings import (LEADER_CAPS_BATCH_BYTES, ConfigError, add_serve_arguments, describe_raft_config,
                                    load_settings)
from raftkv.config.values import format_go_duration, parse_duration_ms

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, ms", [
    ("500ms", 500), ("2s", 2000), ("1m30s", 90_000), ("1.5s", 1500), ("1h", 3_600_000),
    ("0", 0), ("250us", 1), ("1500000ns", 2), (" 10ms ", 10), ("1m0.5s", 60_500),
])
def test_go_durations(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["500", "", "abc", "1x", "-1s", "ms", "1 s", "1s2"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration_ms(text)


@pytest.mark.parametrize("ms, text", [(0, "0s"), (50, "50ms"), (1000, "1s"), (1500, "1.5s"),
                                      (90_000, "1m30s"), (120_000, "2m0s"), (3_600_000, "1h0m0s")])
def test_format_go_duration(ms, text):
    assert format_go_duration(ms) == text


def parse_flags(*argv):
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def test_env_defaults_and_seed_variables():
    s = load_settings({"RAFT_NODE_ID": "n2", "HTTP_SERVER_PORT": "8001", "RAFT_SERVER_PORT": "9001",
                       "RAFT_VOLUME_DIR": "/tmp/node2"})
    assert (s.node_id, s.http_port, s.raft_port, s.volume_dir) == ("n2", 8001, 9001, "/tmp/node2")
    assert s.bind_addr == "127.0.0.1" and s.bootstrap is False and s.join == ()
    assert s.raft_address() == "127.0.0.1:9001" and s.http_address() == "127.0.0.1:8001"
    c = s.raft_config()
    assert (c.heartbeat_timeout, c.election_timeout, c.leader_lease_timeout, c.commit_timeout) == \
        (1000, 1000, 500, 50)
    assert (c.max_append_entries, c.snapshot_threshold, c.snapshot_interval, c.trailing_logs) == \
        (64, 8192, 120_000, 10240)
    assert (s.server_stabilization_time, s.max_trailing_logs, s.log_level, s.log_format) == \
        (10_000, 1000, "INFO", "hclog")


def test_flags_win_over_env():
    env = {"RAFT_NODE_ID": "n1", "HTTP_SERVER_PORT": "8000", "RAFT_HEARTBEAT_TIMEOUT": "2s",
           "RAFT_BOOTSTRAP": "false"}
    s = load_settings(env, parse_flags("--http-port", "8100", "--heartbeat-timeout", "300ms",
                                       "--bootstrap", "--join", "n1:8000,http://n2:8001/"))
    assert s.http_port == 8100 and s.heartbeat_timeout == 300 and s.bootstrap is True
    assert s.join == ("http://n1:8000", "http://n2:8001")
    s = load_settings({**env, "RAFT_BOOTSTRAP": "true"}, parse_flags("--bootstrap=false"))
    assert s.bootstrap is False


def test_timing_knobs_from_env():
    s = load_settings({"RAFT_NODE_ID": "n1", "RAFT_HEARTBEAT_TIMEOUT": "300ms", "RAFT_ELECTION_TIMEOUT": "600ms",
                       "RAFT_COMMIT_TIMEOUT": "10ms", "RAFT_MAX_APPEND_ENTRIES": "128",
                       "RAFT_SNAPSHOT_THRESHOLD": "100", "RAFT_SNAPSHOT_INTERVAL": "1m30s",
                       "RAFT_TRAILING_LOGS": "50", "RAFT_SERVER_STABILIZATION_TIME": "1s",
                       "RAFT_MAX_TRAILING_LOGS": "10", "LOG_LEVEL": "debug", "LOG_FORMAT": "JSON"})
    c = s.raft_config()
    # a lease left at its default follows a shorter heartbeat timeout
    assert (c.heartbeat_timeout, c.election_timeout, c.leader_lease_timeout) == (300, 600, 300)
    assert (c.commit_timeout, c.max_append_entries, c.snapshot_threshold) == (10, 128, 100)
    assert (c.snapshot_interval, c.trailing_logs) == (90_000, 50)
    assert (s.server_stabilization_time, s.max_trailing_logs) == (1000, 10)
    assert (s.log_level, s.log_format) == ("DEBUG", "json")
    text = describe_raft_config(s)
    assert text.startswith("{ProtocolVersion:3 HeartbeatTimeout:300ms ElectionTimeout:600ms")
    assert "SnapshotInterval:1m30s" in text and "LocalID:n1" in text


@pytest.mark.parametrize("env, name", [
    ({"RAFT_NODE_ID": ""}, "RAFT_NODE_ID"),
    ({"RAFT_NODE_ID": "bad id"}, "RAFT_NODE_ID"),
    ({"HTTP_SERVER_PORT": "http"}, "HTTP_SERVER_PORT"),
    ({"RAFT_SERVER_PORT": "0"}, "RAFT_SERVER_PORT"),
    ({"HTTP_SERVER_PORT": "9000"}, "RAFT_SERVER_PORT"),
    ({"RAFT_BOOTSTRAP": "sure"}, "RAFT_BOOTSTRAP"),
    ({"RAFT_HEARTBEAT_TIMEOUT": "100"}, "RAFT_HEARTBEAT_TIMEOUT"),
    ({"RAFT_HEARTBEAT_TIMEOUT": "0s"}, "RAFT_HEARTBEAT_TIMEOUT"),
    ({"RAFT_ELECTION_TIMEOUT": "10ms"}, "RAFT_ELECTION_TIMEOUT"),
    ({"RAFT_LEADER_LEASE_TIMEOUT": "5s"}, "RAFT_LEADER_LEASE_TIMEOUT"),
    ({"RAFT_MAX_APPEND_ENTRIES": "0"}, "RAFT_MAX_APPEND_ENTRIES"),
    ({"RAFT_SNAPSHOT_THRESHOLD": "-5"}, "RAFT_SNAPSHOT_THRESHOLD"),
    ({"RAFT_SERVER_STABILIZATION_TIME": "soon"}, "RAFT_SERVER_STABILIZATION_TIME"),
    ({"RAFT_MAX_TRAILING_LOGS": "x"}, "RAFT_MAX_TRAILING_LOGS"),
    ({"RAFT_JOIN": "http://a b"}, "RAFT_JOIN"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ({"HTTP_MAX_BODY": "12"}, "HTTP_MAX_BODY"),
    ({"RAFT_MAX_FRAME": "lots"}, "RAFT_MAX_FRAME"),
    ({"RAFT_MAX_FRAME": "2GiB"}, "RAFT_MAX_FRAME"),
    ({"RAFT_CONN_IDLE_TIMEOUT": "60"}, "RAFT_CONN_IDLE_TIMEOUT"),
    ({"RAFT_CONN_IDLE_TIMEOUT": "0s"}, "RAFT_CONN_IDLE_TIMEOUT"),
    ({"RAFT_MAX_CONNECTIONS": "3"}, "RAFT_MAX_CONNECTIONS"),
    ({"RAFT_MAX_CONNECTIONS": "many"}, "RAFT_MAX_CONNECTIONS"),
])
def test_bad_values_name_the_variable(env, name):
    full = {"RAFT_NODE_ID": "n1", **env}
    with pytest.raises(ConfigError) as info:
        load_settings(full)
    assert name in str(info.value)


def test_bad_flag_names_flag_and_variable():
    with pytest.raises(ConfigError) as info:
        load_settings({"RAFT_NODE_ID": "n1"}, parse_flags("--raft-port", "ninety"))
    assert "--raft-port" in str(info.value) and "RAFT_SERVER_PORT" in str(info.value)


def test_advertise_addresses():
    s = load_settings({"RAFT_NODE_ID": "n1", "ADVERTISE_ADDR": "n1.example", "BIND_ADDR": "0.0.0.0"})
    assert s.raft_address() == "n1.example:9000" and s.http_address() == "n1.example:8000"
    s = load_settings({"RAFT_NODE_ID": "n1", "ADVERTISE_ADDR": "10.0.0.5:7000"})
    assert s.raft_address() == "10.0.0.5:7000" and s.http_address() == "10.0.0.5:8000"
    s = load_settings({"RAFT_NODE_ID": "n1", "HTTP_ADVERTISE_ADDR": "proxy:80"})
    assert s.http_address() == "proxy:80"
    with pytest.raises(ConfigError, match="HTTP_ADVERTISE_ADDR"):
        load_settings({"RAFT_NODE_ID": "n1", "HTTP_ADVERTISE_ADDR": "proxy"})


# --- the Raft port's limits ---------------------------------------------------

MiB = 1024 * 1024


def test_raft_port_limits_default_and_parse():
    s = load_settings({"RAFT_NODE_ID": "n1"})
    assert (s.max_frame, s.conn_idle_timeout, s.max_connections) == (8 * MiB, 60_000, 256)
    s = load_settings({"RAFT_NODE_ID": "n1", "RAFT_MAX_FRAME": "16MiB", "RAFT_CONN_IDLE_TIMEOUT": "1m30s",
                       "RAFT_MAX_CONNECTIONS": "64"})
    assert (s.max_frame, s.conn_idle_timeout, s.max_connections) == (16 * MiB, 90_000, 64)
    s = load_settings({"RAFT_NODE_ID": "n1", "RAFT_MAX_FRAME": "16MiB"},
                      parse_flags("--max-frame", "33554432", "--conn-idle-timeout", "5s", "--max-connections", "8"))
    assert (s.max_frame, s.conn_idle_timeout, s.max_connections) == (32 * MiB, 5000, 8)


def test_the_idle_limit_is_at_least_the_heartbeat_timeout():
    s = load_settings({"RAFT_NODE_ID": "n1", "RAFT_HEARTBEAT_TIMEOUT": "300ms", "RAFT_CONN_IDLE_TIMEOUT": "300ms"})
    assert s.conn_idle_timeout == 300
    with pytest.raises(ConfigError) as info:
        load_settings({"RAFT_NODE_ID": "n1", "RAFT_CONN_IDLE_TIMEOUT": "500ms"})
    assert str(info.value) == "RAFT_CONN_IDLE_TIMEOUT: 500ms must be at least RAFT_HEARTBEAT_TIMEOUT (1s)"


def test_a_leaders_batches_stop_short_of_the_frame_limit():
    # RaftConfig.max_append_bytes is the core's byte cap on a batch; settings
    # built before the core had it simply leave it out
    config = load_settings({"RAFT_NODE_ID": "n1", "RAFT_MAX_FRAME": "16MiB"}).raft_config()
    if LEADER_CAPS_BATCH_BYTES:
        assert config.max_append_bytes == 16 * MiB - 64 * 1024
    else:
        assert not hasattr(config, "max_append_bytes")


@pytest.mark.parametrize("env, message", [
    ({"RAFT_MAX_FRAME": "1MiB"},
     ("RAFT_MAX_FRAME: 1MiB is too small for one entry at HTTP_MAX_BODY (1MiB): a frame must hold 1088KiB "
      "(HTTP_MAX_BODY + 64KiB); raise RAFT_MAX_FRAME or lower HTTP_MAX_BODY")),
    ({"RAFT_MAX_FRAME": "8MiB", "HTTP_MAX_BODY": "8MiB"},
     "RAFT_MAX_FRAME: 8MiB is too small for one entry at HTTP_MAX_BODY (8MiB): a frame must hold 8256KiB"),
    ({"RAFT_MAX_FRAME": "4MiB", "RAFT_FSM": "hraftd"},
     "a frame must hold 6208KiB (6 x HTTP_MAX_BODY + 64KiB: hraftd's JSON escapes)"),
    ({"RAFT_MAX_FRAME": "1MiB", "HTTP_MAX_BODY": "64KiB"},
     "RAFT_MAX_FRAME: 1MiB is too small for a snapshot chunk: a frame must hold 1088KiB (1MiB + 64KiB)"),
])
def test_a_frame_limit_an_entry_or_a_snapshot_chunk_cannot_fit_is_refused(env, message):
    with pytest.raises(ConfigError) as info:
        load_settings({"RAFT_NODE_ID": "n1", **env})
    assert message in str(info.value)


def test_the_smallest_frame_limits_that_fit_are_accepted():
    assert load_settings({"RAFT_NODE_ID": "n1", "RAFT_MAX_FRAME": "1088KiB"}).max_frame == 1088 * 1024
    s = load_settings({"RAFT_NODE_ID": "n1", "RAFT_MAX_FRAME": "16448KiB", "HTTP_MAX_BODY": "16MiB"})
    assert s.max_frame == s.max_entry_bytes() == 16 * MiB + 64 * 1024


def test_a_bad_frame_limit_stops_raftkv_serve_with_exit_2(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
           "RAFT_NODE_ID": "n1", "RAFT_VOLUME_DIR": str(tmp_path / "data"), "RAFT_MAX_FRAME": "1MiB"}
    r = subprocess.run([sys.executable, "-m", "raftkv", "serve"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 2, r
    assert r.stderr.strip() == ("raftkv serve: RAFT_MAX_FRAME: 1MiB is too small for one entry at HTTP_MAX_BODY "
                                "(1MiB): a frame must hold 1088KiB (HTTP_MAX_BODY + 64KiB); raise RAFT_MAX_FRAME "
                                "or lower HTTP_MAX_BODY")
    assert not (tmp_path / "data").exists()


def test_serve_help_names_the_raft_port_limits():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "(default: 8MiB) [env RAFT_MAX_FRAME]" in text
    assert "(default: 1m0s) [env RAFT_CONN_IDLE_TIMEOUT]" in text
    assert "(default: 256) [env RAFT_MAX_CONNECTIONS]" in text


def test_bootstrap_expect_needs_its_seeds_and_excludes_bootstrap():
    base = {"RAFT_NODE_ID": "n1"}
    s = load_settings({**base, "RAFT_BOOTSTRAP_EXPECT": "3", "RAFT_JOIN": "n1:8000, n2:8000,n3:8000"})
    assert s.bootstrap_expect == 3 and s.join == ("http://n1:8000", "http://n2:8000", "http://n3:8000")
    assert load_settings(base, parse_flags("--bootstrap-expect", "1")).bootstrap_expect == 1
    with pytest.raises(ConfigError, match="RAFT_BOOTSTRAP_EXPECT: 3 servers must find each other"):
        load_settings({**base, "RAFT_BOOTSTRAP_EXPECT": "3"})
    with pytest.raises(ConfigError, match="RAFT_BOOTSTRAP_EXPECT: set it or RAFT_BOOTSTRAP"):
        load_settings({**base, "RAFT_BOOTSTRAP_EXPECT": "1", "RAFT_BOOTSTRAP": "true"})
    with pytest.raises(ConfigError, match="RAFT_BOOTSTRAP_EXPECT"):
        load_settings({**base, "RAFT_BOOTSTRAP_EXPECT": "three"})
