"""The timeline PNG and the unavailability measure."""

from __future__ import annotations

from PIL import Image

from raftkv.chaos.history import FAIL, OK, UNKNOWN, FaultWindow, Op, save_history, unavailability
from raftkv.chaos.timeline import BACKGROUND, COLOURS, FAULT, FAULT_STRIP, TITLE, draw_timeline


def _ops():
    return [Op(1, 0, "set", "k", 0.0, 0.5, OK, "a"), Op(2, 1, "get", "k", 0.2, 3.0, FAIL),
            Op(3, 0, "set", "k", 0.6, 2.6, UNKNOWN, "b"), Op(4, 1, "get", "k", 3.1, 3.2, OK, "a")]


def _x(t: float, end: float = 3.3, width: int = 400) -> int:
    # 40 px of client labels at the left, 10 px margin at the right
    return 40 + int((width - 50) * t / end)


def test_timeline_draws_history_with_faults(tmp_path):
    path = save_history(tmp_path / "h.jsonl", _ops(), [FaultWindow("partition", 0.55, 2.5)], meta={"end": 3.3})
    png = draw_timeline(path, tmp_path / "h.png", width=400)
    with Image.open(png) as image:
        image.load()
        assert image.format == "PNG" and image.mode == "RGB"
        # two client rows of 28 px, 20 px above them, 48 below for the axis and the legend
        assert image.size == (400, 20 + 2 * 28 + 48)
        assert image.text["Title"] == TITLE
        assert image.text["Description"] == ("4 operations by 2 clients over 3.3s; "
                                             "faults: partition 0.55-2.50s")
        px = image.getpixel
        row0, row1 = 20 + 14, 20 + 28 + 14        # the middle of each client's row
        assert px((_x(0.25), row0)) == COLOURS[(OK, True)]         # an ok write
        assert px((_x(2.55), row0)) == COLOURS[(UNKNOWN, True)]    # an unknown write, after the fault
        assert px((_x(2.8), row1)) == COLOURS[(FAIL, False)]       # a failed read
        assert px((_x(3.15), row1)) == COLOURS[(OK, False)]        # an ok read
        assert px((_x(1.0), 20 + 28 + 1)) == FAULT                 # the fault window, between bars
        assert px((_x(2.45), 3)) == FAULT_STRIP                   # the fault strip at the top
        assert px((_x(2.6), 3)) == BACKGROUND                     # which ends with the fault
        assert px((_x(1.0), 20 + 2 * 28)) != BACKGROUND           # the axis
        # written labels: the fault's name in the strip, client names, seconds, the legend
        assert _colours(image, (_x(0.55) + 1, 3, _x(0.55) + 40, 15)) - {FAULT_STRIP}
        assert _colours(image, (0, 20, 40, 20 + 2 * 28)) - {BACKGROUND}
        assert _colours(image, (40, 20 + 2 * 28 + 8, 70, 20 + 2 * 28 + 24)) - {BACKGROUND}
        assert FAULT in _colours(image, (40, 20 + 2 * 28 + 26, 400, 20 + 2 * 28 + 40))


def _colours(image, box) -> set:
    return {colour for _, colour in image.crop(box).getcolors(maxcolors=1 << 16)}


def test_unavailability_is_the_longest_gap_touching_a_fault():
    faults = [FaultWindow("partition", 0.55, 2.5), FaultWindow("kill", 10, 11)]
    worst = unavailability(_ops(), faults, end=12.0)
    assert worst == {"partition": 2.7, "kill": 8.8}
