"""Node settings: environment variables and ``raftkv serve`` flags.

Theory of operation: :func:`load_settings` reads every knob from the
environment (the names of the seed demo: ``RAFT_NODE_ID``, ``HTTP_SERVER_PORT``
...), then lets the matching command-line flag override it, then validates the
whole and returns one frozen :class:`NodeSettings`. Parsing is pure (no
sockets, no files), so it is unit-tested directly; the only lookup it may do is
resolving the advertised host when the node binds a wildcard address, and
that is deferred to :meth:`NodeSettings.resolve_advertise_host`.

Each value is read by a parser of :mod:`.values` (durations are written like
Go's ``time.ParseDuration``: ``500ms``, ``2s``, ``1m30s``). Every error is a
:class:`ConfigError` whose message names the variable (and the flag), and the
CLI turns it into exit code 2.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from ..raft.node import RaftConfig
from ..transport.codec import DEFAULT_MAX_FRAME, SNAPSHOT_CHUNK_SIZE
from .textforms import join_host_port, parse_log_level, parse_node_id, split_host_port
from .values import (
    _byte_size,
    _connection_limit,
    _drift,
    _duration,
    _frame_size,
    _free_space,
    _parse_choice,
    _parse_cluster_key,
    _parse_format,
    _parse_host,
    _parse_int,
    _parse_join,
    _parse_path,
    _parse_port,
    _positive_duration,
    format_go_duration,
    format_size,
    parse_bool,
)

__all__ = ["ConfigError", "NodeSettings", "add_serve_arguments", "load_settings"]

EXIT_USAGE = 2


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


# Room in a frame for everything but entry data or snapshot bytes: the
# message's other fields, per-entry headers, a command's key and encoding.
FRAME_OVERHEAD = 64 * 1024
# hraftd's commands are JSON with non-ASCII escaped: a value of control
# characters grows six-fold (\x01 -> \u0001) on its way into the log.
_HRAFTD_GROWTH = 6

# The Raft core stops an AppendEntries at RaftConfig.max_append_bytes of
# entry data where it has that knob; before it had, only at a count.
LEADER_CAPS_BATCH_BYTES = any(f.name == "max_append_bytes" for f in fields(RaftConfig))

def _opt(env: str, flag: str, parse, default, help: str, metavar: str | None = None, secret: bool = False):
    return field(default=default, repr=not secret, metadata={"env": env, "flag": flag, "parse": parse,
                                                             "help": help, "metavar": metavar})


@dataclass(frozen=True)
class NodeSettings:
    """Everything a node needs to start. Durations are in milliseconds."""

    node_id: str = _opt("RAFT_NODE_ID", "--node-id", parse_node_id, "",
                        "this node's id (required), e.g. n1")
    http_port: int = _opt("HTTP_SERVER_PORT", "--http-port", _parse_port, 8000, "HTTP API port")
    raft_port: int = _opt("RAFT_SERVER_PORT", "--raft-port", _parse_port, 9000, "Raft transport port")
    volume_dir: str = _opt("RAFT_VOLUME_DIR", "--volume-dir", str, "",
                           "data directory (default: ./raftkv-data/<node id>)", "DIR")
    bind_addr: str = _opt("BIND_ADDR", "--bind-addr", _parse_host, "127.0.0.1",
                          "address both listeners bind", "HOST")
    advertise_addr: str = _opt("ADVERTISE_ADDR", "--advertise-addr", _parse_host, "",
                               "host[:port] peers use to reach this node's Raft port "
                               "(default: the bind address)", "HOST")
    http_advertise_addr: str = _opt("HTTP_ADVERTISE_ADDR", "--http-advertise-addr", _parse_host, "",
                                    "host:port other nodes use for this node's HTTP API "
                                    "(default: advertised host + HTTP port)", "HOST:PORT")
    bootstrap: bool = _opt("RAFT_BOOTSTRAP", "--bootstrap", parse_bool, False,
                           "form a one-voter cluster if the volume is empty", "BOOL")
    bootstrap_wait: int = _opt("RAFT_BOOTSTRAP_WAIT", "--bootstrap-wait", _duration, 2000,
                               "an empty bootstrap node listens this long (and one election timeout at least) "
                               "for a cluster that already has it as a member before founding one", "DUR")
    join: tuple[str, ...] = _opt("RAFT_JOIN", "--join", _parse_join, (),
                                 "HTTP address(es) of cluster members to join, comma separated "
                                 "(with RAFT_BOOTSTRAP_EXPECT: the seeds, every server of the cluster)", "ADDR")
    bootstrap_expect: int = _opt("RAFT_BOOTSTRAP_EXPECT", "--bootstrap-expect", lambda t: _parse_int(t, 0, 99), 0,
                                 "an empty node finds the others at the RAFT_JOIN seeds and, once N servers "
                                 "are present and none is in a cluster, they form one of N voters; a seed "
                                 "already in a cluster is joined instead (0: off)", "N")
    log_level: str = _opt("LOG_LEVEL", "--log-level", parse_log_level, "INFO", "TRACE|DEBUG|INFO|WARN|ERROR")
    log_format: str = _opt("LOG_FORMAT", "--log-format", _parse_format, "hclog", "hclog|json")

    heartbeat_timeout: int = _opt("RAFT_HEARTBEAT_TIMEOUT", "--heartbeat-timeout", _positive_duration,
                                  1000, "follower's wait for a leader before an election", "DUR")
    election_timeout: int = _opt("RAFT_ELECTION_TIMEOUT", "--election-timeout", _positive_duration,
                                 1000, "candidate's wait before a new election", "DUR")
    leader_lease_timeout: int = _opt("RAFT_LEADER_LEASE_TIMEOUT", "--leader-lease-timeout",
                                     _positive_duration, 500,
                                     "leader steps down after this long without a quorum", "DUR")
    read_lease: int = _opt("RAFT_READ_LEASE", "--read-lease", _duration, 500,
                           "how long a commit lets the leader serve level=lease reads without a heartbeat "
                           "round (0: no leases; docs/reads.md)", "DUR")
    lease_drift: float = _opt("RAFT_LEASE_DRIFT", "--lease-drift", _drift, 0.01,
                              "the largest rate by which a node's monotonic clock may run fast or slow "
                              "(0.01: one percent); read leases are safe within it", "RATE")
    commit_timeout: int = _opt("RAFT_COMMIT_TIMEOUT", "--commit-timeout", _positive_duration, 50,
                               "longest delay before followers hear of a new commit index", "DUR")
    max_append_entries: int = _opt("RAFT_MAX_APPEND_ENTRIES", "--max-append-entries",
                                   lambda t: _parse_int(t, 1, 1024), 64,
                                   "entries per AppendEntries RPC", "N")
    snapshot_threshold: int = _opt("RAFT_SNAPSHOT_THRESHOLD", "--snapshot-threshold",
                                   lambda t: _parse_int(t, 1), 8192,
                                   "new entries that trigger a snapshot", "N")
    snapshot_interval: int = _opt("RAFT_SNAPSHOT_INTERVAL", "--snapshot-interval", _positive_duration,
                                  120_000, "how often the snapshot threshold is checked", "DUR")
    trailing_logs: int = _opt("RAFT_TRAILING_LOGS", "--trailing-logs", lambda t: _parse_int(t, 0),
                              10240, "entries kept in the log after a snapshot", "N")
    snapshot_log_limit: int = _opt("RAFT_SNAPSHOT_LOG_LIMIT", "--snapshot-log-limit",
                                   lambda t: _parse_int(t, 1), 65536,
                                   "entries since the last snapshot that trigger one at once "
                                   "(bounds the in-memory log)", "N")
    snapshot_log_bytes: int = _opt("RAFT_SNAPSHOT_LOG_BYTES", "--snapshot-log-bytes", _byte_size,
                                   32 * 1024 * 1024,
                                   "the same in bytes of entry data; compaction also keeps fewer "
                                   "than RAFT_TRAILING_LOGS entries if they hold more", "SIZE")
    server_stabilization_time: int = _opt("RAFT_SERVER_STABILIZATION_TIME", "--server-stabilization-time",
                                          _duration, 10_000,
                                          "autopilot: a nonvoter must be healthy this long", "DUR")
    max_trailing_logs: int = _opt("RAFT_MAX_TRAILING_LOGS", "--max-trailing-logs", lambda t: _parse_int(t, 0),
                                  1000, "autopilot: how far behind a healthy server may be", "N")
    last_contact_threshold: int = _opt("RAFT_LAST_CONTACT_THRESHOLD", "--last-contact-threshold",
                                       _positive_duration, 10_000,
                                       "autopilot: longest silence of a healthy server", "DUR")
    autopilot_interval: int = _opt("RAFT_AUTOPILOT_INTERVAL", "--autopilot-interval", _positive_duration,
                                   1000, "autopilot: how often servers are checked", "DUR")
    apply_timeout: int = _opt("RAFT_APPLY_TIMEOUT", "--apply-timeout", _positive_duration, 10_000,
                              "longest wait for a write to commit before answering 503", "DUR")
    leave_on_terminate: bool = _opt("RAFT_LEAVE_ON_TERMINATE", "--leave-on-terminate", parse_bool, False,
                                    "on SIGTERM, hand over leadership and have the leader remove this node "
                                    "from the configuration before stopping, giving up after "
                                    "RAFT_APPLY_TIMEOUT (for scaling down; not for a node that restarts)",
                                    "BOOL")
    fault_injection: bool = _opt("RAFT_FAULT_INJECTION", "--enable-fault-injection", parse_bool, False,
                                 "serve /debug/faults to drop or delay Raft traffic (testing only)", "BOOL")
    cluster_key: str = _opt("RAFT_CLUSTER_KEY", "--cluster-key", _parse_cluster_key, "",
                            "shared secret: Raft connections prove it (HMAC challenge) and admin routes "
                            "require it as a bearer token", "KEY", secret=True)
    peer_key: str = _opt("RAFT_PEER_KEY", "--peer-key", _parse_cluster_key, "",
                         "shared secret for the Raft port only: connections prove it as with RAFT_CLUSTER_KEY, "
                         "while the admin routes stay open (the start scripts set one by default)", "KEY",
                         secret=True)
    protocol: str = _opt("RAFT_PROTOCOL", "--protocol", lambda t: _parse_choice(t, ("raftkv", "hashicorp")),
                         "raftkv", "wire protocol of the Raft port: raftkv's own, or hashicorp/raft 1.1.2's "
                         "net_transport (to join a cluster of Go nodes; pre-vote is then off)",
                         "raftkv|hashicorp")
    fsm: str = _opt("RAFT_FSM", "--fsm", lambda t: _parse_choice(t, ("raftkv", "hraftd")), "raftkv",
                    "state machine commands and snapshot format: raftkv's, or hraftd's JSON",
                    "raftkv|hraftd")
    trace_file: str = _opt("RAFT_TRACE", "--trace-file", str, "",
                           "record every input and output of the Raft core to FILE, "
                           "for `raftkv replay` (off when empty)", "FILE")
    lab_dir: str = _opt("RAFT_LAB", "--lab", str, "",
                        "decide by the Raft lab's functions written in DIR (raftkv lab, docs/lab.md) "
                        "instead of the core's own (off when empty)", "DIR")
    max_body: int = _opt("HTTP_MAX_BODY", "--http-max-body", _byte_size, 1024 * 1024,
                         "largest request body / value accepted (413 above)", "BYTES")
    tls_cert_file: str = _opt("RAFT_TLS_CERT_FILE", "--tls-cert-file", _parse_path, "",
                              "this node's TLS certificate (PEM); with the key and CA files set, the "
                              "Raft port speaks mutual TLS and the HTTP port HTTPS", "FILE")
    tls_key_file: str = _opt("RAFT_TLS_KEY_FILE", "--tls-key-file", _parse_path, "",
                             "the private key of RAFT_TLS_CERT_FILE (PEM)", "FILE")
    tls_ca_file: str = _opt("RAFT_TLS_CA_FILE", "--tls-ca-file", _parse_path, "",
                            "the CA (PEM) that signs every node's certificate; peers must present "
                            "one it signed", "FILE")
    min_free_bytes: int = _opt("RAFT_MIN_FREE_BYTES", "--min-free-bytes", _free_space, 64 * 1024 * 1024,
                               "refuse to start (exit 73) on a volume with less free space than this; "
                               "the default holds one full AppendEntries batch of 64 values of 1MiB "
                               "(0: no check)", "SIZE")
    max_frame: int = _opt("RAFT_MAX_FRAME", "--max-frame", _frame_size, DEFAULT_MAX_FRAME,
                          "largest Raft frame sent or accepted; a leader's AppendEntries stops at this "
                          "size (one entry may fill it); must hold one entry at HTTP_MAX_BODY plus 64KiB",
                          "SIZE")
    conn_idle_timeout: int = _opt("RAFT_CONN_IDLE_TIMEOUT", "--conn-idle-timeout", _positive_duration,
                                  60_000, "an accepted Raft connection with nothing pending is closed "
                                  "after this long without a frame (its dialer redials when it needs to)",
                                  "DUR")
    max_connections: int = _opt("RAFT_MAX_CONNECTIONS", "--max-connections", _connection_limit, 256,
                                "accepted Raft connections at once; beyond it new ones are closed at once "
                                "(each peer holds up to 3)", "N")
    http_workers: int = _opt("HTTP_WORKERS", "--http-workers", lambda t: _parse_int(t, 0, 64), 0,
                             "HTTP worker processes sharing the HTTP port (SO_REUSEPORT); 0 serves "
                             "HTTP in the Raft process itself", "N")
    # The HTTP port's limits against slow or hostile clients (raftkv/http/server/limits.py)
    http_max_head_bytes: int = _opt("HTTP_MAX_HEAD_BYTES", "--http-max-head-bytes", _byte_size, 64 * 1024,
                                    "largest request head, request line and headers together (431 above); "
                                    "a value sent in the query string must fit in it, larger ones go in "
                                    "a POST body", "SIZE")
    http_max_headers: int = _opt("HTTP_MAX_HEADERS", "--http-max-headers", lambda t: _parse_int(t, 1, 10_000),
                                 100, "most header fields in a request (431 above)", "N")
    http_head_timeout: int = _opt("HTTP_HEAD_TIMEOUT", "--http-head-timeout", _positive_duration, 10_000,
                                  "longest a request head may take to arrive once its first byte has, "
                                  "however slowly it trickles (408, then the connection is closed)", "DUR")
    http_idle_timeout: int = _opt("HTTP_IDLE_TIMEOUT", "--http-idle-timeout", _positive_duration, 75_000,
                                  "an idle keep-alive connection is closed after this, and so is one whose "
                                  "request body stops arriving for this long", "DUR")
    http_max_connections: int = _opt("HTTP_MAX_CONNECTIONS", "--http-max-connections",
                                     lambda t: _parse_int(t, 0), 1024,
                                     "most open HTTP connections per process serving the port (each HTTP "
                                     "worker has its own); the next one gets a 503 and is closed (0: no cap)",
                                     "N")

    # ------------------------------------------------------------------ derived

    @property
    def tls(self) -> bool:
        """TLS on both ports (validation guarantees all three files or none)."""
        return bool(self.tls_cert_file)

    @property
    def http_scheme(self) -> str:
        """The scheme of every node's HTTP API: a cluster is all-TLS or not."""
        return "https" if self.tls else "http"

    @property
    def data_dir(self) -> str:
        return self.volume_dir or os.path.join("raftkv-data", self.node_id)

    def resolve_advertise_host(self) -> str:
        """The host peers dial: ADVERTISE_ADDR's host, else the bind address,
        else (binding a wildcard) this machine's name resolved to an address."""
        if self.advertise_addr:
            host, _ = _split_host_port(self.advertise_addr)
            return host
        if self.bind_addr in ("0.0.0.0", "::", "[::]", "*"):
            try:
                return socket.gethostbyname(socket.gethostname())
            except OSError:
                return "127.0.0.1"
        return self.bind_addr

    def raft_address(self) -> str:
        if self.advertise_addr:
            host, port = _split_host_port(self.advertise_addr)
            if port is not None:
                return join_host_port(host, port)
        return join_host_port(self.resolve_advertise_host(), self.raft_port)

    def http_address(self) -> str:
        if self.http_advertise_addr:
            return self.http_advertise_addr
        return join_host_port(self.resolve_advertise_host(), self.http_port)

    @property
    def raft_port_key(self) -> str:
        """The key Raft connections must prove: the cluster key, or the
        Raft-port-only peer key; empty when the port is unauthenticated."""
        return self.cluster_key or self.peer_key

    def max_entry_bytes(self) -> int:
        """The largest log entry the HTTP API can make, as it travels: a
        value (with its key) at HTTP_MAX_BODY, as the state machine encodes it."""
        growth = _HRAFTD_GROWTH if self.fsm == "hraftd" else 1
        return growth * self.max_body + FRAME_OVERHEAD

    def raft_config(self) -> RaftConfig:
        # A batch's entry data stops FRAME_OVERHEAD short of the frame limit,
        # where the core has that knob (see LEADER_CAPS_BATCH_BYTES).
        sizing = {"max_append_bytes": self.max_frame - FRAME_OVERHEAD} if LEADER_CAPS_BATCH_BYTES else {}
        return RaftConfig(
            heartbeat_timeout=self.heartbeat_timeout,
            election_timeout=self.election_timeout,
            leader_lease_timeout=self.leader_lease_timeout,
            commit_timeout=self.commit_timeout,
            max_append_entries=self.max_append_entries,
            snapshot_threshold=self.snapshot_threshold,
            snapshot_interval=self.snapshot_interval,
            trailing_logs=self.trailing_logs,
            snapshot_log_limit=self.snapshot_log_limit,
            snapshot_log_bytes=self.snapshot_log_bytes,
            # hashicorp/raft 1.1.2 has no RequestPreVote RPC and closes the
            # connection on one, so a node speaking its protocol never sends it
            pre_vote=self.protocol != "hashicorp",
            # Go nodes do not defer their commits for a predecessor's lease,
            # so a cluster speaking hashicorp's protocol has no read leases
            read_lease=0 if self.protocol == "hashicorp" else self.read_lease,
            # nor ReadIndexRequest: a follower there forwards reads to the leader
            follower_reads=self.protocol != "hashicorp",
            lease_drift=self.lease_drift,
            **sizing,
        )


def _split_host_port(text: str) -> tuple[str, int | None]:
    """(host, port) of an advertise address; the port is None when absent or
    not a number (the setting then names only the host)."""
    try:
        host, port = split_host_port(text)
    except ValueError:
        return "", None
    return host, (int(port) if port.isdigit() else None)


def _setting_fields():
    return [f for f in fields(NodeSettings) if "env" in f.metadata]


def _shown_default(f) -> str | None:
    """A setting's default as a user would write it (``1s``, ``1MiB``,
    ``false``), or None when there is none worth showing."""
    value, parse = f.default, f.metadata["parse"]
    if value in ("", ()) or f.metadata.get("secret") or not f.repr:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if parse in (_duration, _positive_duration):
        return format_go_duration(value)
    if parse in (_byte_size, _free_space, _frame_size) and value:
        return format_size(value)
    return str(value)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; a flag given on the command line wins over its
    environment variable. Flags are kept as text and parsed like the env.
    The help names each default (the flags themselves default to None, so
    that an unset flag leaves the environment in charge)."""
    for f in _setting_fields():
        md = f.metadata
        shown = _shown_default(f)
        default = f" (default: {shown})" if shown is not None and "(default" not in md["help"] else ""
        kwargs = {"dest": f.name, "default": None, "metavar": md["metavar"],
                  "help": f"{md['help']}{default} [env {md['env']}]"}
        if f.type in ("bool", bool):
            # --bootstrap alone means true; --bootstrap=false is accepted too
            kwargs.update(nargs="?", const="true")
        parser.add_argument(md["flag"], **kwargs)


def load_settings(environ: Mapping[str, str] | None = None,
                  args: argparse.Namespace | Mapping[str, str | None] | None = None) -> NodeSettings:
    """Build settings from the environment, overridden by flags. Raises
    :class:`ConfigError` naming the offending variable or flag."""
    env = os.environ if environ is None else environ
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    flags = args or {}
    values: dict[str, object] = {}
    for f in _setting_fields():
        md = f.metadata
        raw, source = None, None
        if flags.get(f.name) is not None:
            raw, source = flags[f.name], md["flag"]
        elif env.get(md["env"]) not in (None, ""):
            raw, source = env[md["env"]], md["env"]
        if raw is None:
            continue
        try:
            values[f.name] = md["parse"](str(raw))
        except ValueError as exc:
            name = source if source == md["env"] else f"{source} ({md['env']})"
            raise ConfigError(f"{name}: {exc}") from None
    # hashicorp's ValidateConfig relations. A knob left at its default
    # follows the one the user did set (RAFT_HEARTBEAT_TIMEOUT=300ms alone is
    # a fine test setup); two explicit values that contradict are an error.
    hb = values.get("heartbeat_timeout", 1000)
    if "leader_lease_timeout" not in values:
        values["leader_lease_timeout"] = min(500, hb)
    elif values["leader_lease_timeout"] > hb:
        raise ConfigError(f"RAFT_LEADER_LEASE_TIMEOUT: {format_go_duration(values['leader_lease_timeout'])} "
                          f"cannot be larger than RAFT_HEARTBEAT_TIMEOUT ({format_go_duration(hb)})")
    if "election_timeout" not in values:
        values["election_timeout"] = max(1000, hb)
    elif values["election_timeout"] < hb:
        raise ConfigError(f"RAFT_ELECTION_TIMEOUT: {format_go_duration(values['election_timeout'])} "
                          f"must be at least RAFT_HEARTBEAT_TIMEOUT ({format_go_duration(hb)})")
    for name, env_name, minimum in (("heartbeat_timeout", "RAFT_HEARTBEAT_TIMEOUT", 5),
                                    ("election_timeout", "RAFT_ELECTION_TIMEOUT", 5),
                                    ("leader_lease_timeout", "RAFT_LEADER_LEASE_TIMEOUT", 5),
                                    ("snapshot_interval", "RAFT_SNAPSHOT_INTERVAL", 5)):
        if values.get(name, minimum) < minimum:
            raise ConfigError(f"{env_name}: {format_go_duration(values[name])} is too low "
                              f"(at least {minimum}ms)")
    _check_tls(values)
    settings = NodeSettings(**values)
    if not settings.node_id:
        raise ConfigError("RAFT_NODE_ID: required (or --node-id), e.g. RAFT_NODE_ID=n1")
    if settings.bootstrap_expect and settings.bootstrap:
        raise ConfigError("RAFT_BOOTSTRAP_EXPECT: set it or RAFT_BOOTSTRAP, not both (RAFT_BOOTSTRAP founds a "
                          "one-voter cluster at once; RAFT_BOOTSTRAP_EXPECT waits for its N servers)")
    if settings.bootstrap_expect > 1 and not settings.join:
        raise ConfigError(f"RAFT_BOOTSTRAP_EXPECT: {settings.bootstrap_expect} servers must find each other: "
                          "list them in RAFT_JOIN (e.g. RAFT_JOIN=http://n1:8000,http://n2:8000,http://n3:8000)")
    if settings.http_port == settings.raft_port:
        raise ConfigError(f"HTTP_SERVER_PORT and RAFT_SERVER_PORT: both are {settings.http_port}; "
                          "they must differ")
    if settings.advertise_addr:
        host, port = _split_host_port(settings.advertise_addr)
        if not host:
            raise ConfigError(f"ADVERTISE_ADDR: invalid address {settings.advertise_addr!r}")
    if settings.http_advertise_addr:
        host, port = _split_host_port(settings.http_advertise_addr)
        if not host or port is None:
            raise ConfigError(f"HTTP_ADVERTISE_ADDR: expected host:port, got "
                              f"{settings.http_advertise_addr!r}")
    _check_max_frame(settings)
    if settings.peer_key and settings.cluster_key and settings.peer_key != settings.cluster_key:
        raise ConfigError("RAFT_PEER_KEY: differs from RAFT_CLUSTER_KEY, which already guards the Raft port; "
                          "set one of them")
    if settings.peer_key and settings.protocol == "hashicorp":
        raise ConfigError("RAFT_PEER_KEY: hashicorp's net_transport has no cluster key; unset it or use the "
                          "raftkv protocol")
    if settings.conn_idle_timeout < settings.heartbeat_timeout:
        # a follower's channel to its leader carries answers every
        # HeartbeatTimeout/10; a shorter limit would close healthy connections
        raise ConfigError(f"RAFT_CONN_IDLE_TIMEOUT: {format_go_duration(settings.conn_idle_timeout)} must be at "
                          f"least RAFT_HEARTBEAT_TIMEOUT ({format_go_duration(settings.heartbeat_timeout)})")
    return settings


def _check_max_frame(s: NodeSettings) -> None:
    """A frame limit that an entry or a snapshot chunk cannot fit would stop
    replication at the first one, with the node otherwise healthy: refuse it
    at start instead."""
    entry = s.max_entry_bytes()
    if s.max_frame < entry:
        how = (f"{_HRAFTD_GROWTH} x HTTP_MAX_BODY + 64KiB: hraftd's JSON escapes" if s.fsm == "hraftd"
               else "HTTP_MAX_BODY + 64KiB")
        raise ConfigError(f"RAFT_MAX_FRAME: {format_size(s.max_frame)} is too small for one entry at "
                          f"HTTP_MAX_BODY ({format_size(s.max_body)}): a frame must hold {format_size(entry)} "
                          f"({how}); raise RAFT_MAX_FRAME or lower HTTP_MAX_BODY")
    chunk = SNAPSHOT_CHUNK_SIZE + FRAME_OVERHEAD
    if s.max_frame < chunk:
        raise ConfigError(f"RAFT_MAX_FRAME: {format_size(s.max_frame)} is too small for a snapshot chunk: "
                          f"a frame must hold {format_size(chunk)} ({format_size(SNAPSHOT_CHUNK_SIZE)} + 64KiB)")


_TLS_SETTINGS = (("tls_cert_file", "RAFT_TLS_CERT_FILE"), ("tls_key_file", "RAFT_TLS_KEY_FILE"),
                 ("tls_ca_file", "RAFT_TLS_CA_FILE"))


def _check_tls(values: dict[str, object]) -> None:
    """All three TLS files or none; with them, join addresses default to
    https (a cluster is all-TLS or not). Files are read when the node
    starts (raftkv.config.tls), so a bad file fails start-up, not parsing."""
    given = [env for name, env in _TLS_SETTINGS if values.get(name)]
    if not given:
        return
    if len(given) != len(_TLS_SETTINGS):
        missing = [env for name, env in _TLS_SETTINGS if not values.get(name)]
        raise ConfigError(f"{', '.join(missing)}: required with {', '.join(given)} "
                          "(TLS needs the certificate, its key and the CA, or none of them)")
    if values.get("protocol", "raftkv") == "hashicorp":
        raise ConfigError("RAFT_PROTOCOL: hashicorp's net_transport has no TLS; "
                          "unset RAFT_TLS_* or use the raftkv protocol")
    if values.get("http_workers", 0):
        raise ConfigError("HTTP_WORKERS: the worker processes do not serve HTTPS yet; "
                          "use HTTP_WORKERS=0 with RAFT_TLS_*")
    values["join"] = tuple("https://" + j[len("http://"):] if j.startswith("http://") else j
                           for j in values.get("join", ()))


def describe_raft_config(settings: NodeSettings) -> str:
    """The config as hashicorp/raft's ``creating Raft`` would print its
    Config struct with ``%+v`` (durations in Go's notation)."""
    c = settings.raft_config()
    d = format_go_duration
    return (
        "{ProtocolVersion:3 "
        f"HeartbeatTimeout:{d(c.heartbeat_timeout)} ElectionTimeout:{d(c.election_timeout)} "
        f"CommitTimeout:{d(c.commit_timeout)} MaxAppendEntries:{c.max_append_entries} "
        f"MaxRPCsInFlight:{c.max_inflight} BatchApplyCh:true ShutdownOnRemove:false "
        f"TrailingLogs:{c.trailing_logs} SnapshotInterval:{d(c.snapshot_interval)} "
        f"SnapshotThreshold:{c.snapshot_threshold} LeaderLeaseTimeout:{d(c.leader_lease_timeout)} "
        f"LocalID:{settings.node_id} LogLevel:{settings.log_level} "
        f"PreVoteDisabled:{'false' if c.pre_vote else 'true'} "
        f"CheckQuorum:{'true' if c.check_quorum else 'false'}}}"
    )
