"""The textual forms raftkv reads or writes in more than one place: host:port
addresses, booleans, node ids, log levels and Go durations. One definition
each, shared by the settings, the HTTP parameters, the CLI and the logs."""

from __future__ import annotations

import re

__all__ = ["LOG_LEVELS", "NODE_ID", "go_duration", "join_host_port", "parse_bool", "parse_log_level",
           "parse_node_id", "parse_port", "split_host_port"]

# --- host:port --------------------------------------------------------------------


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets (Go's net.JoinHostPort)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(text: str) -> tuple[str, str]:
    """(host, port) of ``host:port`` or ``[v6]:port``; either may be empty
    when absent. Raises ValueError for text that cannot be an address."""
    text = text.strip()
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid address {text!r}: expected [host]:port")
        port = rest[1:]
    elif text.count(":") > 1:
        host, port = text, ""  # a bare IPv6 address
    else:
        host, _, port = text.partition(":")
    if any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(f"invalid address {text!r}: expected host:port")
    return host, port


def parse_port(text: str) -> int:
    t = text.strip()
    if not t.isdigit() or not 0 < int(t) < 65536:
        raise ValueError(f"invalid port {text!r}: must be a number between 1 and 65535")
    return int(t)


# --- booleans and ids ---------------------------------------------------------------

TRUE_WORDS = frozenset(("1", "true", "t", "yes", "y", "on"))
FALSE_WORDS = frozenset(("0", "false", "f", "no", "n", "off"))


def parse_bool(text: str, empty: bool | None = None) -> bool:
    """true/false and their usual spellings; ``empty`` is what "" means
    (None: it is an error)."""
    t = text.strip().lower()
    if t == "" and empty is not None:
        return empty
    if t in TRUE_WORDS:
        return True
    if t in FALSE_WORDS:
        return False
    raise ValueError(f"invalid boolean {text!r} (use true or false)")


NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NODE_ID_RULE = "letters, digits, '.', '_', '-' (up to 64)"


def parse_node_id(text: str) -> str:
    t = text.strip()
    if not NODE_ID.fullmatch(t):
        raise ValueError(f"invalid node id {text!r}: use {NODE_ID_RULE}")
    return t


# --- log levels ------------------------------------------------------------------------

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")


def parse_log_level(text: str) -> str:
    t = text.strip().upper()
    if t == "WARNING":
        t = "WARN"
    if t not in LOG_LEVELS:
        raise ValueError(f"unknown log level {text!r} (one of {', '.join(LOG_LEVELS)})")
    return t


# --- Go durations ------------------------------------------------------------------------


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: ``0s``, ``1.5ms``, ``500µs``, ``1m30s``, ``1h0m0s``."""
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        # Below a second: a single unit with a trimmed fraction.
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _with_fraction(ns, size) + unit
    minutes, sec_ns = divmod(ns, 60_000_000_000)
    hours, minutes = divmod(minutes, 60)
    text = _with_fraction(sec_ns, 1_000_000_000) + "s"
    if hours:
        text = f"{hours}h{minutes}m{text}"  # Go keeps "0m" once hours show
    elif minutes:
        text = f"{minutes}m{text}"
    return sign + text


def _with_fraction(n: int, unit: int) -> str:
    whole, frac = divmod(n, unit)
    if not frac:
        return str(whole)
    width = len(str(unit)) - 1
    return f"{whole}.{frac:0{width}d}".rstrip("0")
