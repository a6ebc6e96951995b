"""Sweeping a folder of short-lived records (`.imageserver/sources/downloads/`): whatever has outlived its use
is removed now and then, by the first request to come by once a sweep is due, so that the folder
never grows without bound however many different records are made."""
from __future__ import annotations

import os
import time

# Its modification time is when the folder was last swept, by any worker of any server sharing it.
LAST_SWEEP = ".last-sweep"
# Temporary and lock files are left only by a worker killed mid-write: long past any request's end.
LEFTOVER_SECONDS = 3600


def now_and_then(folder: str, max_age: float) -> int:
    """Sweep `folder` unless it was swept less than `max_age` seconds ago: one stat when not due.
    Returns the number of files removed."""
    marker = os.path.join(folder, LAST_SWEEP)
    now = time.time()
    try:
        if now - os.stat(marker).st_mtime < max_age:
            return 0
        os.utime(marker)
    except FileNotFoundError:
        try:
            open(marker, "a").close()
        except FileNotFoundError:
            return 0        # no folder yet: nothing to sweep
    return remove_older_than(folder, max_age, now)


def remove_older_than(folder: str, max_age: float, now: float) -> int:
    """Remove the records last written more than `max_age` seconds before `now`, and leftover
    temporary and lock files (their names start with a dot) older than LEFTOVER_SECONDS."""
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name == LAST_SWEEP:
                continue
            limit = LEFTOVER_SECONDS if entry.name.startswith(".") else max_age
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > limit:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass    # removed meanwhile, by another sweep or by its own request
    return removed
