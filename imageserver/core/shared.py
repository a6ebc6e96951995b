"""Memory shared by the gunicorn master and the workers it forks: the upload counters of
/status_check, and the flag that a graceful stop has begun.

The counters live in shared memory made when this module is first imported. gunicorn's master imports it
(through gunicorn_conf) before it forks the workers, so all workers count into the same numbers;
imported in a single process, they are that process's own.
"""
from __future__ import annotations

import mmap
import multiprocessing


class PostingCounts:
    """Uploads in progress, seen in all, and failed, across the workers."""

    def __init__(self):
        self._values = {name: multiprocessing.Value("q", 0) for name in
                        ("current", "total_count", "failed_count")}

    def add(self, name: str, amount: int = 1) -> None:
        value = self._values[name]
        with value.get_lock():
            value.value += amount

    def as_dict(self) -> dict:
        return {name: value.value for name, value in self._values.items()}


POSTING = PostingCounts()


class StopFlag:
    """One byte of memory shared by the master and the workers it forks: set once a graceful stop
    has begun, so that every /status_check (the status port's and the app's) answers 501."""

    def __init__(self):
        self._memory = mmap.mmap(-1, 1)

    def set(self) -> None:
        self._memory[0] = 1

    def is_set(self) -> bool:
        return self._memory[0] == 1
