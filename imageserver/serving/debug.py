"""--profile: CPU profiles of a worker's requests, taken on demand, and the top of its Python heap.

Off by default: tracing every allocation (tracemalloc) costs memory and time in every request.
Tracing starts once the app is loaded, so the heap top shows what serving requests holds on to.
ImageMagick's own pixel memory is not Python's, so the heap top shows what Python holds; the
process's resident size is given beside it.
"""
from __future__ import annotations

import cProfile
import marshal
import os
import threading
import time
import tracemalloc

from imageserver.core.errors import Unavailable

# Frames kept per allocation: enough to see who called the allocating line, cheap enough to leave on.
TRACE_FRAMES = 4
# How long a finished profile waits for the requests still running under it.
SETTLE_SECONDS = 60


class Profiler:
    """Profiles the requests of this worker while a profile is being taken, none otherwise."""

    def __init__(self):
        self._profile = None          # the cProfile.Profile being filled, while there is one
        self._running = 0             # requests running under it
        self._changed = threading.Condition()
        self._one_at_a_time = threading.Lock()
        tracemalloc.start(TRACE_FRAMES)

    def wrap(self, wsgi_app):
        """The WSGI app, each request run under the current profile when one is being taken."""

        def profiled(environ, start_response):
            with self._changed:
                profile = self._profile
                self._running += profile is not None
            if profile is None:
                return wsgi_app(environ, start_response)
            profile.enable()
            try:
                return wsgi_app(environ, start_response)
            finally:
                profile.disable()
                with self._changed:
                    self._running -= 1
                    self._changed.notify_all()

        return profiled

    def cpu_profile(self, seconds: float) -> bytes:
        """Profile the requests of the next `seconds`; the stats in the format of pstats' files."""
        if not self._one_at_a_time.acquire(blocking=False):
            raise Unavailable("a profile is already being taken in this worker")
        try:
            profile = cProfile.Profile()
            with self._changed:
                self._profile = profile
            time.sleep(seconds)
            with self._changed:
                self._profile = None
                self._changed.wait_for(lambda: self._running == 0, SETTLE_SECONDS)
            profile.create_stats()
            return marshal.dumps(profile.stats)
        finally:
            self._one_at_a_time.release()

    def heap_top(self, limit: int) -> str:
        """The lines of code holding the most Python memory now, largest first."""
        current, peak = tracemalloc.get_traced_memory()
        lines = [f"worker {os.getpid()}: resident {_resident_bytes() / 2**20:.1f} MiB; "
                 f"Python traced {current / 2**20:.1f} MiB (peak {peak / 2**20:.1f} MiB)", ""]
        statistics = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]).statistics("lineno")
        for stat in statistics[:limit]:
            frame = stat.traceback[0]
            lines.append(f"{stat.size / 1024:10.1f} KiB {stat.count:8d} blocks  "
                         f"{frame.filename}:{frame.lineno}")
        return "\n".join(lines) + "\n"


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
