"""Upload counters for /status_check, shared by every gunicorn worker.

They live in shared memory made when this module is first imported. gunicorn's master imports it
(through gunicorn_conf) before it forks the workers, so all workers count into the same numbers;
imported in a single process, they are that process's own.
"""
from __future__ import annotations

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
