"""The value of one setting, from its text: the parsers (and the two formatters)
behind every field of :class:`~.settings.NodeSettings`.

Durations are written like Go's ``time.ParseDuration`` (``500ms``, ``2s``,
``1m30s``) because the people running this know hashicorp's knobs by those
spellings; sizes as bytes or with a unit (``512KiB``, ``1MiB``). A parser
raises ``ValueError`` with what is wrong with the text;
:func:`~.settings.load_settings` adds the variable's (or flag's) name.
"""

from __future__ import annotations

import re

from . import textforms
from .textforms import go_duration

__all__ = ["MAX_FRAME_LIMIT", "format_go_duration", "format_size", "parse_bool", "parse_duration_ms",
           "parse_duration_ns"]

MAX_FRAME_LIMIT = 1024 ** 3

_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
            "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration_ns(text: str) -> int:
    """Go's time.ParseDuration for non-negative values: ``1m30s`` -> 90e9."""
    s = text.strip()
    if s in ("0", "+0"):
        return 0
    if s.startswith("+"):
        s = s[1:]
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    if s.startswith("-"):
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            if re.fullmatch(r"\d+(\.\d*)?", s[pos:]):
                raise ValueError(f"invalid duration {text!r}: missing unit (e.g. 500ms, 2s)")
            raise ValueError(f"invalid duration {text!r}: expected e.g. 500ms, 2s, 1m30s")
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    return int(round(total))


def parse_duration_ms(text: str) -> int:
    """A Go duration in whole milliseconds (sub-millisecond remainders round up,
    so ``500us`` is 1ms rather than a zero timeout)."""
    ns = parse_duration_ns(text)
    return -(-ns // 1_000_000)


def format_go_duration(ms: int) -> str:
    """Go's Duration.String for a whole number of milliseconds."""
    return go_duration(ms * 1_000_000)


def parse_bool(text: str) -> bool:
    """A boolean setting; an empty value is false."""
    return textforms.parse_bool(text, empty=False)


def _parse_int(text: str, lo: int, hi: int | None = None) -> int:
    t = text.strip()
    if not re.fullmatch(r"[+]?\d+", t):
        raise ValueError(f"invalid integer {text!r}")
    value = int(t)
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ValueError(f"{value} out of range (must be {bound})")
    return value


def _parse_port(text: str) -> int:
    return _parse_int(text, 1, 65535)


def _parse_format(text: str) -> str:
    t = text.strip().lower()
    if t not in ("hclog", "json"):
        raise ValueError(f"unknown log format {text!r} (hclog or json)")
    return t


def _parse_host(text: str) -> str:
    t = text.strip()
    if not t or any(c.isspace() for c in t) or "/" in t:
        raise ValueError(f"invalid address {text!r}")
    return t


def _parse_join(text: str) -> tuple[str, ...]:
    out = []
    for part in text.split(","):
        p = part.strip()
        if not p:
            continue
        if "://" not in p:
            p = "http://" + p
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", p):
            raise ValueError(f"invalid join address {part!r} (expected host:port or http://host:port)")
        out.append(p.rstrip("/"))
    return tuple(out)


def _drift(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"invalid rate {text!r}: expected a fraction such as 0.01 (1%)") from None
    if not 0 <= rate < 0.5:
        raise ValueError(f"invalid rate {text!r}: expected at least 0 and below 0.5")
    return rate


def _duration(text: str) -> int:
    return parse_duration_ms(text)


def _positive_duration(text: str) -> int:
    ms = parse_duration_ms(text)
    if ms <= 0:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    return ms


def _size_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]i?[bB]?|[bB])?\s*", text)
    if m is None:
        raise ValueError(f"invalid size {text!r} (e.g. 1048576, 512KiB, 1MiB)")
    n = int(m.group(1))
    unit = (m.group(2) or "b").lower()[0]
    return n * {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[unit]


def _byte_size(text: str) -> int:
    n = _size_bytes(text)
    if n < 1024:
        raise ValueError(f"size {text!r} too small (at least 1KiB)")
    return n


def _frame_size(text: str) -> int:
    n = _byte_size(text)
    if n > MAX_FRAME_LIMIT:
        raise ValueError(f"size {text!r} too large (at most {format_size(MAX_FRAME_LIMIT)})")
    return n


def _connection_limit(text: str) -> int:
    # each peer holds up to three connections (append, heartbeat, a snapshot
    # stream), and a redial may overlap the connection it replaces
    return _parse_int(text, 8, 65535)


def format_size(n: int) -> str:
    """A byte count as a user would write it: ``8MiB``, ``1088KiB``, ``1000``."""
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _free_space(text: str) -> int:
    """A size where 0 means "no minimum"."""
    return _size_bytes(text)


def _parse_choice(text: str, choices: tuple[str, ...]) -> str:
    value = text.strip().lower()
    if value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}")
    return value


def _parse_path(text: str) -> str:
    path = text.strip()
    if not path:
        raise ValueError("empty path")
    return path


def _parse_cluster_key(text: str) -> str:
    key = text.strip()
    if len(key.encode("utf-8")) < 16:
        raise ValueError("a cluster key must be at least 16 bytes (e.g. openssl rand -hex 32)")
    return key
