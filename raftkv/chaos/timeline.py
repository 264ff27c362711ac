"""A timeline PNG of a history, drawn without any plotting library.

Theory of operation
-------------------
One row per client; each operation is a bar from its call to its return (for
an unknown op: to when the client gave up), coloured by outcome -- green ok,
red fail, orange unknown; reads are drawn in a lighter shade than writes.
Fault windows are shaded grey across all rows (and drawn as a dark strip
along the top, where no bar hides them), and a tick marks every second
(a taller one, labelled, every ten; coarser steps on long runs). Labels are digits in a 3x5 pixel font:
seconds under the axis, client numbers at the left.

The image is an RGB raster in a ``bytearray`` written as PNG with
:mod:`zlib` (one IDAT chunk, filter type 0), so this works anywhere Python
does.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from .history import FAIL, OK, UNKNOWN, load_history

__all__ = ["draw_timeline", "encode_png"]

COLOURS = {
    (OK, True): (46, 160, 67), (OK, False): (140, 210, 150),
    (FAIL, True): (200, 40, 40), (FAIL, False): (235, 140, 140),
    (UNKNOWN, True): (240, 150, 0), (UNKNOWN, False): (250, 200, 110),
}
FAULT = (215, 215, 228)
FAULT_STRIP = (110, 110, 160)
BACKGROUND = (255, 255, 255)
AXIS = (60, 60, 60)

_DIGITS = {
    "0": ("111", "101", "101", "101", "111"), "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"), "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"), "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"), "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"), "9": ("111", "101", "111", "001", "111"),
}


def encode_png(width: int, height: int, rgb: bytes | bytearray) -> bytes:
    """An 8-bit RGB PNG of ``rgb`` (row-major, 3 bytes per pixel)."""
    if len(rgb) != width * height * 3:
        raise ValueError("pixel buffer does not match the size")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    stride = width * 3
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        raw += rgb[y * stride:(y + 1) * stride]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw), 6))
            + chunk(b"IEND", b""))


class _Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.w = width
        self.h = height
        self.px = bytearray(bytes(BACKGROUND) * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int]) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.w, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.h, max(y0, y1))
        if x1 <= x0 or y1 <= y0:
            return
        line = bytes(colour) * (x1 - x0)
        for y in range(y0, y1):
            i = (y * self.w + x0) * 3
            self.px[i:i + len(line)] = line

    def text(self, x: int, y: int, s: str, colour=AXIS, scale: int = 2) -> None:
        for ch in s:
            glyph = _DIGITS.get(ch)
            if glyph is not None:
                for gy, row in enumerate(glyph):
                    for gx, bit in enumerate(row):
                        if bit == "1":
                            self.rect(x + gx * scale, y + gy * scale, x + (gx + 1) * scale,
                                      y + (gy + 1) * scale, colour)
            x += 4 * scale


def draw_timeline(history: str | Path, out: str | Path, width: int = 1600, row: int = 28) -> Path:
    ops, faults, meta = load_history(history)
    clients = sorted({op.client for op in ops}) or [0]
    end = max([op.ret or op.call for op in ops] + [w.end or 0 for w in faults] + [meta.get("end", 0), 1.0])
    left, right, top, bottom = 40, 10, 16, 30
    height = top + row * len(clients) + bottom
    c = _Canvas(width, height)
    span = width - left - right

    def x(t: float) -> int:
        return left + int(span * max(0.0, t) / end)

    for w in faults:
        c.rect(x(w.start), 3, max(x(w.end if w.end is not None else end), x(w.start) + 1), 11, FAULT_STRIP)
        c.rect(x(w.start), top, max(x(w.end if w.end is not None else end), x(w.start) + 1),
               top + row * len(clients), FAULT)
    rows = {client: i for i, client in enumerate(clients)}
    for op in ops:
        y = top + rows[op.client] * row
        colour = COLOURS[(op.outcome, op.is_write)]
        ret = op.ret if op.ret is not None else end
        c.rect(x(op.call), y + 4, max(x(ret), x(op.call) + 1), y + row - 4, colour)
    axis_y = top + row * len(clients)
    c.rect(left, axis_y, width - right, axis_y + 1, AXIS)
    # a tick every second and a label every ten on short runs; on long runs
    # the steps grow (10 s / 60 s, ...) so that labels never overlap
    tick, label = 1, 10
    while span / max(end, 1) * label < 40:
        tick, label = tick * 10 if tick < 10 else tick * 6, label * 6 if label < 60 else label * 5
    for s in range(0, int(end) + 1, tick):
        tall = s % label == 0
        c.rect(x(s), axis_y, x(s) + 1, axis_y + (8 if tall else 4), AXIS)
        if tall:
            c.text(x(s) + 2, axis_y + 10, str(s))
    for client, i in rows.items():
        c.text(4, top + i * row + row // 2 - 5, str(client))
    out = Path(out)
    out.write_bytes(encode_png(width, height, c.px))
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m raftkv.chaos.timeline")
    p.add_argument("history")
    p.add_argument("out", nargs="?")
    args = p.parse_args(argv)
    out = args.out or str(Path(args.history).with_suffix(".png"))
    print(draw_timeline(args.history, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
