"""Log lines in hashicorp go-hclog's format, so raftkv's logs read like hashicorp/raft's.

Theory of operation: two pure renderers turn one event -- a unix time, a level
name, a logger name, a message and ordered ``(key, value)`` pairs -- into one
finished line: :func:`render_line` for hclog's plain text (the default) and
:func:`render_json` for its JSON variant. Both follow go-hclog v1.3.1+ as
described in ``shared/hclog-catalog.md`` §1, value by value: Python types stand
in for the Go types hclog switches on (``str`` is a Go string, :class:`Bare` a
named string type, ``timedelta`` a ``time.Duration``, ``None`` a nil pointer).

On top sits one process-wide sink: :func:`configure` picks the level, format and
stream. Two front doors feed it. :func:`get_logger` returns a structlog bound
logger whose level methods compare against the configured level before
anything is built, so disabled levels cost one comparison; enabled calls run a
single structlog processor that renders the event. :func:`emit` takes the
Raft core's ``Log`` effects, which are plain tuples. Every line goes out in one
``write`` call under a lock, then a flush, so lines never interleave.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import IO, Any

import structlog

__all__ = [
    "LEVELS", "Bare", "HclogLogger", "add_listener", "configure", "emit", "format_duration",
    "get_logger", "is_enabled", "remove_listener", "render_json", "render_line",
]

LEVELS = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "ERROR": 4}

# Always 7 characters; INFO and WARN carry a pad space (catalog §1).
_BRACKETS = {"TRACE": "[TRACE]", "DEBUG": "[DEBUG]", "INFO": "[INFO] ",
             "WARN": "[WARN] ", "ERROR": "[ERROR]"}

_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n",
            "\r": r"\r", "\t": r"\t", "\v": r"\v"}


# A string logged like a Go named string type (raft ServerID / ServerAddress):
# hclog prints those with %v, so an empty one prints nothing (``leader-id=``),
# where an empty plain ``str`` prints ``""``. The Raft core creates these.
from raftkv.raft.effects import Bare  # noqa: E402


# --- values ---------------------------------------------------------------

def format_duration(td: timedelta) -> str:
    """Go's ``time.Duration.String()``: ``0s``, ``1.5ms``, ``500µs``, ``1m30s``, ``1h0m0s``."""
    ns = (td // timedelta(microseconds=1)) * 1000
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


def _go_float(f: float) -> str:
    """Go's ``%v`` for a float64: shortest digits, exponent form outside [1e-4, 1e6)."""
    if not math.isfinite(f):
        return "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")
    _, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    exp10 = len(digits) + exp - 1  # decimal exponent of the leading digit
    if exp10 < -4 or exp10 >= 6:  # Go's %g cut-over for shortest precision
        return format(f, f".{len(digits) - 1}e")
    return format(f, f".{max(len(digits) - 1 - exp10, 0)}f")


def _go_v(value: object) -> str:
    """Go's ``%v`` text for a value with no hclog special case."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_go_v(v) for v in value) + "]"
    return str(value)


def _escape(text: str, backslashed: str, hex_del: bool = False) -> str:
    """Escape non-printables Go style, and backslash the characters in *backslashed*.

    hclog's own escaper (``backslashed='"'``) leaves backslashes alone; Go's
    strconv.Quote (``'"\\\\'``, ``hex_del=True``) doubles them and writes DEL as ``\\x7f``.
    """
    if text.isprintable() and not any(c in text for c in backslashed):
        return text
    out = []
    for ch in text:
        if ch in backslashed:
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or (hex_del and ch == "\x7f"):
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def _go_quote(text: str) -> str:
    return '"' + _escape(text, '"\\', hex_del=True) + '"'


def _needs_quoting(text: str) -> bool:
    return any(not "-" <= ch <= "~" for ch in text)


def _render_slice(items: Sequence[object]) -> str:
    parts = []
    for item in items:
        if isinstance(item, str):
            parts.append(_go_quote(item))
        elif isinstance(item, int) and not isinstance(item, bool):
            parts.append(str(item))
        else:
            text = _go_v(item)
            parts.append(_go_quote(text) if any(c in text for c in " \t\n\r") else text)
    return "[" + ", ".join(parts) + "]"


def _render_value(value: object) -> tuple[str, bool]:
    """The value text and whether it is raw (exempt from the quoting rule)."""
    if isinstance(value, str) and not isinstance(value, Bare):
        return (str(value), False) if value else ('""', True)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), False
    if isinstance(value, (list, tuple)):
        return _render_slice(value), True
    return _go_v(value), False


def _render_pair(key: object, value: object) -> str:
    text, raw = _render_value(value)
    if "\n" in text:
        # hclog's block form: "\n  key=\n", one "  | line" per line, then two spaces.
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        body = "".join(f"  | {_escape(line, '')}\n" for line in lines)
        return f"\n  {key}=\n{body}  "
    if not raw and _needs_quoting(text):
        text = '"' + _escape(text, '"') + '"'
    return f" {key}={text}"


# --- lines ----------------------------------------------------------------

def _timestamp(when: float, digits: int, colon: bool) -> str:
    """Local time, fraction truncated to *digits*, zone ``Z`` or ``+hhmm``/``+hh:mm``."""
    # Round to the microsecond first: a float like 1612250178.228 is really
    # ...227999925, and truncating that directly would print .227.
    sec, micros = divmod(round(when * 1_000_000), 1_000_000)
    tm = time.localtime(sec)
    offset = tm.tm_gmtoff
    if offset == 0:
        zone = "Z"
    else:
        hours, minutes = divmod(abs(offset) // 60, 60)
        zone = f"{'-' if offset < 0 else '+'}{hours:02d}{':' if colon else ''}{minutes:02d}"
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', tm)}.{micros:06d}"[:20 + digits] + zone


def render_line(when: float | None, level: str, name: str, message: str,
                fields: Sequence[tuple[str, object]]) -> str:
    """One hclog plain-text line, newline included.

    *when* is a unix time rendered in the local zone; ``None`` drops the
    timestamp and its space (hclog's DisableTime), handy for comparing with
    the catalog's timestamp-less examples.
    """
    head = "" if when is None else _timestamp(when, 3, colon=False) + " "
    if name and message:
        text = f"{name}: {message}"
    else:
        text = name or message
    pairs = "".join(_render_pair(k, v) for k, v in fields)
    return f"{head}{_BRACKETS.get(level, '[?????]')} {text}{':' + pairs if fields else ''}\n"


def _json_value(value: object) -> Any:
    """Python stand-ins for what Go's encoding/json would print for the Go value."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        # Go prints integral floats without ".0".
        return int(value) if value.is_integer() and abs(value) < 1e21 else value
    if isinstance(value, timedelta):
        return (value // timedelta(microseconds=1)) * 1000  # Duration is integer ns
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


# Go's encoder escapes HTML characters and the JS line separators.
_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                               "\u2028": "\\u2028", "\u2029": "\\u2029"})


def render_json(when: float | None, level: str, name: str, message: str,
                fields: Sequence[tuple[str, object]]) -> str:
    """One hclog JSON line (keys sorted, like Go's map encoding), newline included."""
    record: dict[str, Any] = {"@level": level.lower() if level in LEVELS else "all",
                              "@message": message}
    if name:
        record["@module"] = name
    if when is not None:
        record["@timestamp"] = _timestamp(when, 6, colon=True)
    for key, value in fields:
        record[str(key)] = _json_value(value)
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    # Safe to translate the whole text: these characters only occur inside strings.
    return text.translate(_JSON_ESCAPES) + "\n"


# --- the process-wide sink ------------------------------------------------

@dataclass
class _Config:
    level: int = LEVELS["INFO"]
    render: Callable[..., str] = render_line
    stream: IO[str] | None = None  # None: whatever sys.stderr is at write time


_config = _Config()
_write_lock = threading.Lock()
# Callables ``fn(when, level, name, message, fields)`` told of every line that
# is written (the node's event ring buffer for /ui); called after the write.
_listeners: list[Callable[[float, str, str, str, Sequence[tuple[str, object]]], None]] = []


def add_listener(fn: Callable[[float, str, str, str, Sequence[tuple[str, object]]], None]) -> None:
    """Also hand every written event, unrendered, to *fn* (it must be cheap and not raise)."""
    _listeners.append(fn)


def remove_listener(fn: Callable[..., None]) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def _tell(when: float, level: str, name: str, message: str, fields: Sequence[tuple[str, object]]) -> None:
    for fn in _listeners:
        fn(when, level, name, message, fields)
_RENDERERS = {"hclog": render_line, "json": render_json}


def _parse_level(level: str) -> int:
    try:
        return LEVELS[level.upper()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown log level {level!r}; expected one of "
                         f"{', '.join(LEVELS)}") from None


def configure(level: str = "INFO", fmt: str = "hclog", stream: IO[str] | None = None) -> None:
    """Set the level (TRACE..ERROR, any case), format (``hclog`` | ``json``) and stream."""
    threshold = _parse_level(level)
    try:
        render = _RENDERERS[fmt.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown log format {fmt!r}; expected 'hclog' or 'json'") from None
    _config.level, _config.render, _config.stream = threshold, render, stream


def is_enabled(level: str) -> bool:
    """Whether a line at *level* would be written under the current configuration."""
    return _parse_level(level) >= _config.level


def _write(line: str) -> None:
    stream = sys.stderr if _config.stream is None else _config.stream
    with _write_lock:
        stream.write(line)
        stream.flush()


def emit(level: str, name: str, message: str, fields: Sequence[tuple[str, object]]) -> None:
    """Write one event, e.g. a Raft core ``Log`` effect, if its level is enabled."""
    if _parse_level(level) >= _config.level:
        when, level = time.time(), level.upper()
        _write(_config.render(when, level, name, message, fields))
        if _listeners:
            _tell(when, level, name, message, fields)


class _Sink:
    """structlog's wrapped logger: carries the hclog name and writes finished lines."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, line: str) -> None:
        _write(line)

    trace = debug = info = warn = error = write


def _render_event(logger: _Sink, method_name: str, event_dict: dict[str, Any]) -> str:
    message = event_dict.pop("event", "")
    # event_dict keeps bound keys first, then the call's keywords in call order.
    when, level, fields = time.time(), method_name.upper(), list(event_dict.items())
    if _listeners:
        _tell(when, level, logger.name, message, fields)
    return _config.render(when, level, logger.name, message, fields)


def _level_method(method_name: str) -> Any:
    threshold = LEVELS[method_name.upper()]

    def method(self: HclogLogger, event: str = "", **fields: Any) -> None:
        # Checked on every call rather than baked into the class (as structlog's
        # make_filtering_bound_logger does) so configure() also affects loggers
        # created earlier, e.g. at import time.
        if threshold >= _config.level:
            self._proxy_to_logger(method_name, event, **fields)

    method.__name__ = method_name
    return method


class HclogLogger(structlog.BoundLoggerBase):
    """A structlog bound logger with hclog's five levels, filtered before rendering."""

    trace = _level_method("trace")
    debug = _level_method("debug")
    info = _level_method("info")
    warn = warning = _level_method("warn")
    error = _level_method("error")


def get_logger(name: str) -> HclogLogger:
    """A logger named *name* (``raft``, ``raft.net``...): ``log.info("msg", **{"k": v})``."""
    return HclogLogger(_Sink(name), processors=[_render_event], context={})
