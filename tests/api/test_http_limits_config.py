"""The HTTP port's limits as settings: HTTP_MAX_HEAD_BYTES, HTTP_MAX_HEADERS,
HTTP_HEAD_TIMEOUT, HTTP_IDLE_TIMEOUT and HTTP_MAX_CONNECTIONS, from the
environment or flags, into the fast path's and aiohttp's keyword arguments."""

from __future__ import annotations

import argparse

import pytest

from raftkv.config.settings import ConfigError, add_serve_arguments, load_settings
from raftkv.http.server.limits import HttpLimits

KiB = 1024


def flags(*argv):
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults():
    s = load_settings({"RAFT_NODE_ID": "n1"})
    limits = HttpLimits.from_settings(s)
    assert limits == HttpLimits(max_head=64 * KiB, max_headers=100, head_timeout=10.0, idle_timeout=75.0,
                                max_connections=1024)
    assert limits.fast_path_kwargs() == {"max_head": 64 * KiB, "max_headers": 100, "head_timeout": 10.0,
                                         "idle_timeout": 75.0, "max_connections": 1024}
    # aiohttp's own idle timeout (an hour by default) is the port's
    assert limits.aiohttp_kwargs() == {"keepalive_timeout": 75.0, "max_line_size": 64 * KiB,
                                       "max_field_size": 64 * KiB, "max_headers": 100}


def test_from_the_environment_and_flags():
    env = {"RAFT_NODE_ID": "n1", "HTTP_MAX_HEAD_BYTES": "16KiB", "HTTP_MAX_HEADERS": "40",
           "HTTP_HEAD_TIMEOUT": "2s", "HTTP_IDLE_TIMEOUT": "30s", "HTTP_MAX_CONNECTIONS": "0"}
    limits = HttpLimits.from_settings(load_settings(env))
    assert limits == HttpLimits(16 * KiB, 40, 2.0, 30.0, None)  # 0: no cap
    limits = HttpLimits.from_settings(load_settings(env, flags("--http-max-head-bytes", "8192",
                                                               "--http-head-timeout", "500ms",
                                                               "--http-max-connections", "64")))
    assert (limits.max_head, limits.head_timeout, limits.max_connections) == (8 * KiB, 0.5, 64)


@pytest.mark.parametrize("env, name", [
    ({"HTTP_MAX_HEAD_BYTES": "100"}, "HTTP_MAX_HEAD_BYTES"),       # under 1 KiB
    ({"HTTP_MAX_HEAD_BYTES": "lots"}, "HTTP_MAX_HEAD_BYTES"),
    ({"HTTP_MAX_HEADERS": "0"}, "HTTP_MAX_HEADERS"),
    ({"HTTP_HEAD_TIMEOUT": "0"}, "HTTP_HEAD_TIMEOUT"),
    ({"HTTP_HEAD_TIMEOUT": "10"}, "HTTP_HEAD_TIMEOUT"),            # no unit
    ({"HTTP_IDLE_TIMEOUT": "-1s"}, "HTTP_IDLE_TIMEOUT"),
    ({"HTTP_MAX_CONNECTIONS": "-5"}, "HTTP_MAX_CONNECTIONS"),
])
def test_bad_values_name_the_setting(env, name):
    with pytest.raises(ConfigError) as info:
        load_settings({"RAFT_NODE_ID": "n1", **env})
    assert str(info.value).startswith(name)


def test_a_worker_gets_the_same_limits_and_the_raft_process_relays_uncapped():
    limits = HttpLimits(16 * KiB, 40, 2.0, 30.0, 64)
    assert HttpLimits.from_spec(limits.to_spec()) == limits
    internal = limits.for_relays()
    assert internal.max_connections is None and internal.max_head > limits.max_head
    assert (internal.head_timeout, internal.idle_timeout) == (limits.head_timeout, limits.idle_timeout)


def test_serve_help_names_the_http_limits():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    text = " ".join(parser.format_help().split())
    for shown in ("(default: 64KiB) [env HTTP_MAX_HEAD_BYTES]", "(default: 100) [env HTTP_MAX_HEADERS]",
                  "(default: 10s) [env HTTP_HEAD_TIMEOUT]", "(default: 1m15s) [env HTTP_IDLE_TIMEOUT]",
                  "(default: 1024) [env HTTP_MAX_CONNECTIONS]"):
        assert shown in text, shown
