"""The timeline PNG and the unavailability measure."""

from __future__ import annotations

import struct
import zlib

from raftkv.chaos.history import FAIL, OK, UNKNOWN, FaultWindow, Op, save_history, unavailability
from raftkv.chaos.timeline import draw_timeline, encode_png


def _chunks(png: bytes):
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + data)
        yield kind, data
        pos += 12 + length


def test_encode_png_is_a_valid_rgb_image():
    png = encode_png(3, 2, bytes(range(18)))
    chunks = dict(_chunks(png))
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (w, h, depth, colour) == (3, 2, 8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    assert raw == b"\x00" + bytes(range(9)) + b"\x00" + bytes(range(9, 18))


def _ops():
    return [Op(1, 0, "set", "k", 0.0, 0.5, OK, "a"), Op(2, 1, "get", "k", 0.2, 3.0, FAIL),
            Op(3, 0, "set", "k", 0.6, 2.6, UNKNOWN, "b"), Op(4, 1, "get", "k", 3.1, 3.2, OK, "a")]


def test_timeline_draws_history_with_faults(tmp_path):
    path = save_history(tmp_path / "h.jsonl", _ops(), [FaultWindow("partition", 0.55, 2.5)], meta={"end": 3.3})
    png = draw_timeline(path, tmp_path / "h.png", width=400)
    chunks = dict(_chunks(png.read_bytes()))
    w, h = struct.unpack(">II", chunks[b"IHDR"][:8])
    raw = zlib.decompress(chunks[b"IDAT"])
    assert w == 400 and len(raw) == h * (1 + 3 * w)
    pixels = {raw[i:i + 3] for i in range(1, len(raw), 3)}
    assert bytes((46, 160, 67)) in pixels            # an ok write
    assert bytes((240, 150, 0)) in pixels            # an unknown write
    assert bytes((215, 215, 228)) in pixels          # the fault window


def test_unavailability_is_the_longest_gap_touching_a_fault():
    faults = [FaultWindow("partition", 0.55, 2.5), FaultWindow("kill", 10, 11)]
    worst = unavailability(_ops(), faults, end=12.0)
    assert worst == {"partition": 2.7, "kill": 8.8}
