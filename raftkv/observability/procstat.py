"""CPU time and resident memory of a process, from /proc (Linux)."""

from __future__ import annotations

import os

__all__ = ["process_stats", "rss_bytes"]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_stats(role: str, pid: int) -> dict | None:
    """``{"role", "pid", "cpu_seconds", "rss_bytes"}`` of a live process, or
    None when it is gone (or there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/statm", "rb") as f:
            statm = f.read()
        # the command name (field 2) may hold spaces: count fields after its ')'
        fields = stat[stat.rindex(b")") + 2:].split()
        utime, stime = int(fields[11]), int(fields[12])
        rss_pages = int(statm.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return {"role": role, "pid": pid, "cpu_seconds": round((utime + stime) / _TICKS, 2),
            "rss_bytes": rss_pages * _PAGE}


def rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default), 0 if unknown."""
    stats = process_stats("", os.getpid() if pid is None else pid)
    return stats["rss_bytes"] if stats else 0
