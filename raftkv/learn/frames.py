"""A branch's frames, as the learning page's simulator keeps them
(:mod:`raftkv.learn.world`): compressed JSON, and which of them may not be
followed by an action."""

from __future__ import annotations

import json
import zlib

__all__ = ["Frames"]


class Frames:
    """A branch's frames, each kept as compressed JSON: a 7-server frame is
    5 KB as Python objects and well under 1 KB this way, and the page gets
    them as JSON anyway (:meth:`json`). Indexing and slicing give dicts.
    ``inseparable`` holds the counts of frames after which nothing can be
    done, because the next frame was made in the same breath: the halves of
    one step (its log writes in memory, then on disk), the cluster's start."""

    __slots__ = ("_blobs", "inseparable")

    def __init__(self, blobs: list[bytes] | None = None, inseparable: set[int] | None = None) -> None:
        self._blobs = blobs if blobs is not None else []
        self.inseparable = inseparable if inseparable is not None else set()

    def __len__(self) -> int:
        return len(self._blobs)

    def append(self, frame: dict) -> None:
        self._blobs.append(zlib.compress(json.dumps(frame, separators=(",", ":")).encode(), 1))

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [json.loads(zlib.decompress(blob)) for blob in self._blobs[key]]
        return json.loads(zlib.decompress(self._blobs[key]))

    def json(self, start: int, stop: int) -> str:
        """Frames ``start`` to ``stop`` (exclusive) as a JSON array."""
        return "[" + ",".join(zlib.decompress(blob).decode() for blob in self._blobs[start:stop]) + "]"

    def head(self, count: int) -> "Frames":
        """The first ``count`` frames, shared, not copied."""
        return Frames(self._blobs[:count], {i for i in self.inseparable if i < count})

    def bind(self, start: int, first_too: bool = False) -> None:
        """The frames from ``start`` on were made together: nothing can be
        done between them (with ``first_too``, nor before the first)."""
        self.inseparable.update(range(start if first_too else start + 1, len(self._blobs)))
