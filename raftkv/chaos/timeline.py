"""A timeline PNG of a history, drawn with Pillow.

Theory of operation
-------------------
One row per client (labelled ``c0``, ``c1``, ... at the left); each operation
is a bar from its call to its return (for an unknown op: to when the client
gave up), coloured by outcome -- green ok, red fail, orange unknown; reads
are drawn in a lighter shade than writes. Fault windows are shaded grey
across all rows and drawn as a dark strip along the top, where no bar hides
them, with the fault's name written in it when it fits. A tick marks every
second (a taller one, labelled, every ten; coarser steps on long runs), and a
legend of the colours sits under the axis.

The picture is a :class:`PIL.Image.Image`; the PNG carries a ``Title`` and a
``Description`` text chunk saying what it shows (operations, clients,
duration, faults), so a file found later explains itself.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from .history import FAIL, OK, UNKNOWN, load_history

__all__ = ["draw_timeline", "TITLE"]

TITLE = "raftkv chaos timeline"

COLOURS = {
    (OK, True): (46, 160, 67), (OK, False): (140, 210, 150),
    (FAIL, True): (200, 40, 40), (FAIL, False): (235, 140, 140),
    (UNKNOWN, True): (240, 150, 0), (UNKNOWN, False): (250, 200, 110),
}
FAULT = (215, 215, 228)
FAULT_STRIP = (110, 110, 160)
BACKGROUND = (255, 255, 255)
AXIS = (60, 60, 60)
LEGEND = (("ok write", COLOURS[(OK, True)]), ("ok read", COLOURS[(OK, False)]),
          ("failed", COLOURS[(FAIL, True)]), ("unknown", COLOURS[(UNKNOWN, True)]), ("fault", FAULT))

# margins in pixels: client labels at the left; the fault strip at the top;
# tick labels and the legend at the bottom
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 20, 48
STRIP_TOP, STRIP_BOTTOM = 2, 16


class _Canvas:
    """Filled boxes with half-open pixel bounds, as the layout computes them
    (Pillow's rectangles include their far edge)."""

    def __init__(self, width: int, height: int) -> None:
        self.image = Image.new("RGB", (width, height), BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)
        self.font = ImageFont.load_default()

    def box(self, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int]) -> None:
        if x1 > x0 and y1 > y0:
            self.draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=colour)

    def text(self, x: int, y: int, s: str, colour=AXIS) -> None:
        self.draw.text((x, y), s, fill=colour, font=self.font)

    def text_width(self, s: str) -> float:
        return self.draw.textlength(s, font=self.font)


def _describe(ops, faults, clients, end) -> str:
    windows = ", ".join(f"{w.name} {w.start:.2f}-{w.end:.2f}s" if w.end is not None else f"{w.name} {w.start:.2f}s-"
                        for w in faults)
    return (f"{len(ops)} operations by {len(clients)} clients over {end:.1f}s; "
            f"faults: {windows or 'none'}")


def draw_timeline(history: str | Path, out: str | Path, width: int = 1600, row: int = 28) -> Path:
    ops, faults, meta = load_history(history)
    clients = sorted({op.client for op in ops}) or [0]
    end = max([op.ret or op.call for op in ops] + [w.end or 0 for w in faults] + [meta.get("end", 0), 1.0])
    height = TOP + row * len(clients) + BOTTOM
    c = _Canvas(width, height)
    span = width - LEFT - RIGHT

    def x(t: float) -> int:
        return LEFT + int(span * max(0.0, t) / end)

    for w in faults:
        x0 = x(w.start)
        x1 = max(x(w.end if w.end is not None else end), x0 + 1)
        c.box(x0, STRIP_TOP, x1, STRIP_BOTTOM, FAULT_STRIP)
        c.box(x0, TOP, x1, TOP + row * len(clients), FAULT)
        if c.text_width(w.name) + 4 <= x1 - x0:
            c.text(x0 + 2, STRIP_TOP + 1, w.name, BACKGROUND)
    rows = {client: i for i, client in enumerate(clients)}
    for op in ops:
        y = TOP + rows[op.client] * row
        ret = op.ret if op.ret is not None else end
        c.box(x(op.call), y + 4, max(x(ret), x(op.call) + 1), y + row - 4, COLOURS[(op.outcome, op.is_write)])
    axis_y = TOP + row * len(clients)
    c.box(LEFT, axis_y, width - RIGHT, axis_y + 1, AXIS)
    # a tick every second and a label every ten on short runs; on long runs
    # the steps grow (10 s / 60 s, ...) so that labels never overlap
    tick, label = 1, 10
    while span / max(end, 1) * label < 40:
        tick, label = tick * 10 if tick < 10 else tick * 6, label * 6 if label < 60 else label * 5
    for s in range(0, int(end) + 1, tick):
        tall = s % label == 0
        c.box(x(s), axis_y, x(s) + 1, axis_y + (8 if tall else 4), AXIS)
        if tall:
            c.text(x(s) + 2, axis_y + 8, f"{s}s")
    for client, i in rows.items():
        c.text(4, TOP + i * row + row // 2 - 6, f"c{client}")
    lx, ly = LEFT, axis_y + 28
    for name, colour in LEGEND:
        c.box(lx, ly, lx + 14, ly + 10, colour)
        c.text(lx + 18, ly - 1, name)
        lx += 18 + int(c.text_width(name)) + 16
    info = PngInfo()
    info.add_text("Title", TITLE)
    info.add_text("Description", _describe(ops, faults, clients, end))
    out = Path(out)
    c.image.save(out, format="PNG", pnginfo=info, optimize=True)
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
