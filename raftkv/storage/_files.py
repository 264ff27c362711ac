"""What the three stores share: making a directory's entries durable, and a
log function for stores built without one."""

from __future__ import annotations

import os
from collections.abc import Callable

LogFn = Callable[[str, str, list], None]


def noop_log(level: str, message: str, fields: list) -> None:
    return None


def fsync_dir(path: str) -> None:
    """fsync a directory, so that files created, renamed or removed in it
    survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
