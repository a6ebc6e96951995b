"""Free space on local disk, and the reserve (--minimum_free_bytes) kept under new images and sizes.

The reserve refuses new work with 507 while there is still room: room for the uploads and renders
already under way to finish whole, for the upload journal, and for whatever else shares the disk.
What is on disk is still served.
"""
from __future__ import annotations

import os

from imageserver.core.errors import DiskFull


def free_bytes(folder: str) -> int:
    """Bytes free to this (unprivileged) process on the file system of `folder`, or of its nearest
    existing parent (the folder is made with the first image)."""
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def check_reserve(folder: str, minimum: int, needed: int = 0) -> None:
    """DiskFull unless `needed` bytes more still leave `minimum` free."""
    free = free_bytes(folder)
    if free - needed < minimum:
        raise DiskFull("the disk is full: new images and sizes are refused until space is freed")


def report(folder: str, minimum: int) -> dict:
    """For /status_check."""
    free = free_bytes(folder)
    return {"free_bytes": free, "minimum_free_bytes": minimum, "full": free < minimum}
