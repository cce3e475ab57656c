"""What a test process holds in memory, for tests that bound what a request may leave behind."""

from __future__ import annotations

import os
from pathlib import Path


def resident_mb() -> float:
    """This process's resident memory now (not its peak), in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
