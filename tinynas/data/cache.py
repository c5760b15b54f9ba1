"""When to keep decoded images in memory: the ``data.cache`` recipe option.

``auto`` caches a dataset when its decoded pixels fit in a quarter of the memory available now,
capped at 4 GiB (shared by the training processes of one machine); ``ram`` always caches;
``none`` never does. Where available memory cannot be read, ``auto`` does not cache.
"""

from __future__ import annotations

import os
from typing import Sequence

from .coco import CocoDataset

CACHE_MODES = ("auto", "ram", "none")
AUTO_SHARE = 0.25
AUTO_CAP = 4 * 2**30


def available_memory() -> int | None:
    """Bytes of memory available to new allocations, or None where the system will not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def auto_budget(processes: int = 1) -> int:
    """Bytes ``auto`` may cache in each of ``processes`` processes filling caches at once."""
    available = available_memory()
    if available is None:
        return 0
    return int(min(AUTO_SHARE * available, AUTO_CAP)) // max(1, processes)


def cache_datasets(mode: str, datasets: Sequence[CocoDataset], max_side: int | None, processes: int = 1,
                   progress: bool = False) -> list[bool]:
    """Fill the caches ``mode`` allows, earlier datasets first; which ones were cached."""
    if mode not in CACHE_MODES:
        raise ValueError(f"unknown cache mode {mode!r} (known: {', '.join(CACHE_MODES)})")
    left = auto_budget(processes) if mode == "auto" else 0
    cached = []
    for coco in datasets:
        size = coco.decoded_bytes(max_side)
        take = mode == "ram" or (mode == "auto" and size <= left)
        if take:
            coco.cache_decoded(max_side, progress=progress)
            left -= size
        cached.append(take)
    return cached
