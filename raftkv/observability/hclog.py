"""Log lines in hashicorp go-hclog's format, so raftkv's logs read like hashicorp/raft's.

Theory of operation: two pure renderers turn one event -- a unix time, a level
name, a logger name, a message and ordered ``(key, value)`` pairs -- into one
finished line: :func:`render_line` for hclog's plain text (the default) and
:func:`render_json` for its JSON variant. Both follow go-hclog v1.3.1+'s
formatting (``intlogger.go``: the timestamp, the padded level, ``name:
message``, then ``key=value`` pairs, quoting a value with a space or a quote
in it), value by value: Python types stand
in for the Go types hclog switches on (``str`` is a Go string, :class:`Bare` a
named string type, ``timedelta`` a ``time.Duration``, ``None`` a nil pointer).

Every line goes through structlog, set up by :func:`configure`: the wrapper
class :class:`HclogLogger` filters by level before anything is built, the
processor chain turns the call into an hclog record, hands it to the taps
(:func:`add_processor`; the node's event ring for ``/ui``) and renders it with
one of the two renderers, and the wrapped logger :class:`LineWriter` writes
the line to the configured stream.

Two front doors: ``get_logger("raft.snapshot").info("message", key=value)``
for code that writes its own lines, and :func:`emit_fields` /
:func:`log_effect` for lines whose pairs come pre-built, like the Raft core's
``Log`` effects.
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

from raftkv.config.textforms import go_duration

__all__ = [
    "LEVELS", "Bare", "HclogLogger", "LineWriter", "add_processor", "configure",
    "emit_fields", "format_duration", "get_logger", "is_enabled", "json_renderer", "log_effect",
    "remove_processor", "render_json", "render_line", "text_renderer", "to_hclog_record",
]

LEVELS = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "ERROR": 4}

# Always 7 characters; INFO and WARN carry a pad space, as hclog prints them.
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
    return go_duration((td // timedelta(microseconds=1)) * 1000)


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

# The date, time and zone of the last second rendered, keyed by that second,
# the zone form and the process's zone settings (tests switch TZ): localtime()
# and strftime() are most of a line's cost, and lines come many to a second.
_last_second: tuple[tuple[object, ...], str, str] = ((), "", "")


def _timestamp(when: float, digits: int, colon: bool) -> str:
    """Local time, fraction truncated to *digits*, zone ``Z`` or ``+hhmm``/``+hh:mm``."""
    global _last_second
    # Round to the microsecond first: a float like 1612250178.228 is really
    # ...227999925, and truncating that directly would print .227.
    sec, micros = divmod(round(when * 1_000_000), 1_000_000)
    key = (sec, colon, time.timezone, time.tzname)
    cached_key, date_time, zone = _last_second
    if cached_key != key:
        tm = time.localtime(sec)
        offset = tm.tm_gmtoff
        if offset == 0:
            zone = "Z"
        else:
            hours, minutes = divmod(abs(offset) // 60, 60)
            zone = f"{'-' if offset < 0 else '+'}{hours:02d}{':' if colon else ''}{minutes:02d}"
        date_time = time.strftime('%Y-%m-%dT%H:%M:%S', tm)
        _last_second = (key, date_time, zone)
    return f"{date_time}.{micros:06d}"[:20 + digits] + zone


def render_line(when: float | None, level: str, name: str, message: str,
                fields: Sequence[tuple[str, object]]) -> str:
    """One hclog plain-text line, newline included.

    *when* is a unix time rendered in the local zone; ``None`` drops the
    timestamp and its space (hclog's DisableTime), handy for comparing with
    hashicorp/raft's log lines with the times cut off.
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


# --- structlog: the wrapped logger, the processors, the filtering class -----
#
# Every line goes through structlog. A call such as ``log.info("msg", k=v)``
# runs, in order:
#   1. HclogLogger.info -- swapped for a no-op by configure() when INFO is
#      below the level, so a filtered call costs one method lookup and call;
#   2. structlog's _proxy_to_logger: bound context, then the keywords, then
#      the message under "event";
#   3. the processor chain _PROCESSORS: to_hclog_record (the record shape
#      below), the taps (e.g. the node's EventRing), then the renderer of the
#      configured format, which returns the finished line;
#   4. LineWriter, the wrapped logger, writes that line to the configured stream.
#
# configure() changes the chain, the class's level methods and the stream in
# place rather than handing structlog new objects, so that loggers created
# (and cached) before it -- module-level ones, made at import -- follow it too.

# The event-dict key under which emit_fields() hands over pre-built pairs, so
# that they keep duplicates and keys Python keywords cannot carry ("event").
_PAIRS = "@pairs"


def to_hclog_record(logger: LineWriter, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the call's keywords become hclog's ordered pairs.

    Returns the record the later processors see: ``timestamp`` (unix time),
    ``level`` (``INFO``...), ``logger`` (the hclog name), ``event`` (the
    message) and ``fields`` (a sequence of ``(key, value)`` pairs: bound
    context first, then the call's keywords in call order).
    """
    message = event_dict.pop("event", "")
    pairs = event_dict.pop(_PAIRS, None)
    if pairs is None:
        fields: Sequence[tuple[str, object]] = tuple(event_dict.items())
    elif event_dict:
        fields = (*event_dict.items(), *pairs)
    else:
        fields = pairs
    return {"timestamp": time.time(), "level": method_name.upper(), "logger": logger.name,
            "event": message, "fields": fields}


def text_renderer(_logger: LineWriter, _method_name: str, record: dict[str, Any]) -> str:
    """structlog renderer for hclog's plain-text lines (the default format)."""
    return render_line(record["timestamp"], record["level"], record["logger"],
                       record["event"], record["fields"])


def json_renderer(_logger: LineWriter, _method_name: str, record: dict[str, Any]) -> str:
    """structlog renderer for hclog's JSON lines."""
    return render_json(record["timestamp"], record["level"], record["logger"],
                       record["event"], record["fields"])


class _Taps:
    """structlog processor running the processors added with :func:`add_processor`.

    A stage of its own so the chain keeps its length: a thread iterating the
    chain while another adds or removes a tap never skips the renderer.
    """

    def __init__(self) -> None:
        self.processors: tuple[Callable[..., Any], ...] = ()

    def __call__(self, logger: LineWriter, method_name: str, record: dict[str, Any]) -> dict[str, Any]:
        for processor in self.processors:
            record = processor(logger, method_name, record)
        return record


_taps = _Taps()
_RENDERERS = {"hclog": text_renderer, "text": text_renderer, "json": json_renderer}
# Shared by every logger (structlog keeps a reference); configure() swaps the renderer in place.
_PROCESSORS: list[Callable[..., Any]] = [to_hclog_record, _taps, text_renderer]


@dataclass
class _Output:
    stream: IO[str] | None = None  # None: whatever sys.stderr is at write time


_output = _Output()
_write_lock = threading.Lock()


class LineWriter:
    """structlog's wrapped logger: carries the hclog name and writes finished lines.

    Each line goes out in one ``write`` call under a lock, then a flush, so
    lines from the loop and the disk thread never interleave.
    """

    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name

    def write(self, line: str) -> None:
        stream = sys.stderr if _output.stream is None else _output.stream
        with _write_lock:
            stream.write(line)
            stream.flush()

    msg = trace = debug = info = warn = warning = error = write

    def __repr__(self) -> str:
        return f"LineWriter({self.name!r})"


def _nop(self: Any, event: str = "", **fields: Any) -> None:
    return None


def _emitting(method_name: str) -> Callable[..., None]:
    def method(self: HclogLogger, event: str = "", **fields: Any) -> None:
        self._proxy_to_logger(method_name, event, **fields)

    method.__name__ = method_name
    return method


_EMITTING = {name.lower(): _emitting(name.lower()) for name in LEVELS}

# Every accepted spelling of a level, to its method name.
_METHOD_FOR = {spelling: name.lower() for name in LEVELS for spelling in (name, name.lower())}
_METHOD_FOR.update(WARNING="warn", warning="warn")


def _method_for(level: str) -> str:
    try:
        return _METHOD_FOR[level]
    except KeyError:
        pass
    try:
        return _METHOD_FOR[level.upper()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown log level {level!r}; expected one of "
                         f"{', '.join(LEVELS)}") from None


class HclogLogger(structlog.BoundLoggerBase):
    """A structlog bound logger with hclog's five levels.

    Like the classes ``structlog.make_filtering_bound_logger`` makes, a level
    below the configured one is a method that returns at once, before any
    event dict is built. Unlike them there is one class whose methods
    :func:`configure` swaps, so existing loggers follow a new level.
    """

    trace = debug = info = warn = warning = error = _nop  # set by configure()

    def log(self, level: str, event: str = "", **fields: Any) -> None:
        """Log at a level given by name (``"INFO"``, ``"warn"``...)."""
        getattr(self, _method_for(level))(event, **fields)

    def log_fields(self, level: str, event: str, fields: Sequence[tuple[str, object]]) -> None:
        """Log a line whose pairs are already built, in order, after any bound
        ones; they may hold keys keywords cannot (duplicates, ``event``).

        Its signature is the ``log(level, message, fields)`` callable the
        stores and the fault injector take: ``log=get_logger("fsm").log_fields``.
        """
        try:
            enabled = _enabled[level]
        except KeyError:
            enabled = _enabled[_method_for(level)]
        if enabled:
            # The level is known to be enabled: straight to structlog's dispatch.
            self._proxy_to_logger(_METHOD_FOR.get(level) or _method_for(level), event, **{_PAIRS: fields})


# --- configuration ----------------------------------------------------------

# Every accepted spelling of a level, to whether it is written: is_enabled()
# and emit_fields() cost one lookup here. Replaced whole by configure().
_enabled: dict[str, bool] = {}


def configure(level: str = "INFO", fmt: str = "hclog", stream: IO[str] | None = None) -> None:
    """Set the level (TRACE..ERROR, any case), the format (``hclog`` or
    ``text``, or ``json``) and the stream (``None``: ``sys.stderr`` at write
    time), for every logger, including those created earlier."""
    global _enabled
    threshold = LEVELS[_method_for(level).upper()]
    try:
        renderer = _RENDERERS[fmt.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown log format {fmt!r}; expected 'hclog', 'text' or 'json'") from None
    _enabled = {spelling: LEVELS[method.upper()] >= threshold for spelling, method in _METHOD_FOR.items()}
    for name, value in LEVELS.items():
        setattr(HclogLogger, name.lower(), _EMITTING[name.lower()] if value >= threshold else _nop)
    HclogLogger.warning = HclogLogger.warn
    _PROCESSORS[-1] = renderer
    _output.stream = stream
    structlog.configure(processors=_PROCESSORS, wrapper_class=HclogLogger, context_class=dict,
                        logger_factory=LineWriter, cache_logger_on_first_use=True)


def is_enabled(level: str) -> bool:
    """Whether a line at *level* would be written: a cheap check before
    building fields that cost something to compute."""
    try:
        return _enabled[level]
    except KeyError:
        return _enabled[_method_for(level)]


def add_processor(processor: Callable[[Any, str, dict[str, Any]], dict[str, Any]]) -> None:
    """Also run *processor* on every record that is written, before it is
    rendered (it gets the record :func:`to_hclog_record` makes, must return
    it, be cheap and not raise). The node's event ring is one."""
    _taps.processors = (*_taps.processors, processor)


def remove_processor(processor: Callable[..., Any]) -> None:
    _taps.processors = tuple(p for p in _taps.processors if p is not processor)


# --- front doors --------------------------------------------------------------

def get_logger(name: str) -> HclogLogger:
    """The structlog logger for hclog name *name* (``raft``, ``raft.net``...).

    ``log.info("copied to local snapshot", bytes=n)``; keys that are not
    Python identifiers go through a dict: ``log.info("m", **{"last-index": i})``.
    Pairs print in the order given, bound ones (``log.bind(id=...)``) first.
    """
    return structlog.get_logger(name).bind()


# One logger per name for emit_fields(), made on first use.
_named: dict[str, HclogLogger] = {}


def emit_fields(level: str, name: str, message: str, fields: Sequence[tuple[str, object]]) -> None:
    """Log a line whose pairs are already built through the logger named
    *name*: :meth:`HclogLogger.log_fields` with the name as an argument.

    Its signature is the ``log(level, logger, message, fields)`` callable the
    transports take: ``TcpTransport(..., log=hclog.emit_fields)``.
    """
    try:
        enabled = _enabled[level]
    except KeyError:
        enabled = _enabled[_method_for(level)]
    if enabled:  # checked here too, so a filtered line costs no logger lookup
        logger = _named.get(name)
        if logger is None:
            logger = _named.setdefault(name, get_logger(name))
        logger.log_fields(level, message, fields)


def log_effect(effect: Any) -> None:
    """Send a Raft core ``Log`` effect (level, logger, message, fields)."""
    emit_fields(effect.level, effect.logger, effect.message, effect.fields)


configure()
