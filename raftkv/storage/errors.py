"""Why a volume refuses to start: something it made durable reads back
damaged or missing.

A crash can only tear what was never made durable: the end of the last log
segment, a snapshot still in its ``.tmp`` directory, a stable-store copy
that the other copy outlives. The stores repair those on open. Anything else
means the disk lost data this node may have acknowledged; a node that went
on would vote and answer as if it never held that data, so the stores raise
:class:`StorageCorruptError` instead and leave every file as they found it,
for the operator to inspect.
"""

from __future__ import annotations

__all__ = ["RECOVERY", "StorageCorruptError"]

RECOVERY = ("wipe the volume (RAFT_VOLUME_DIR) and start the node again: "
            "the cluster re-admits it as a new server once it has caught up")


class StorageCorruptError(Exception):
    """Durable data is damaged or missing. ``path`` names the file (or the
    directory, when files are missing), ``offset`` the byte where the damage
    starts (0 when the whole file is in doubt)."""

    def __init__(self, path: str, offset: int, problem: str) -> None:
        self.path = path
        self.offset = offset
        self.problem = problem
        super().__init__(f"{path} is corrupt at offset {offset}: {problem}; {RECOVERY}")
