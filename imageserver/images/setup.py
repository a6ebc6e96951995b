"""The set-up of a process that handles images: once per process, after any fork.

In each gunicorn worker (gunicorn_conf.post_worker_init), in `images process`, and in any worker
that no hook of ours set up (plain `gunicorn wsgi:app`), on its first request; never in gunicorn's
master. ImageMagick is not fork-safe, and reads its policy once, at its first use.
"""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

from imageserver.core.settings import Settings
from imageserver.imaging import formats, magick, pipeline
from imageserver.imaging.source import Limits


@dataclass(frozen=True)
class WorkerSetUp:
    """What init_worker found in this process, handed to what uses it (Images, doctor, nginx)."""
    pid: int                        # the process set up (a forked child has its own to set up)
    formats: formats.Formats       # the coders this process's ImageMagick reads and writes


def init_worker(settings: Settings, on_leak: Callable[[], None] | None = None) -> WorkerSetUp:
    """What concerns the whole process: ImageMagick's policy and limits, and the formats it reads
    and writes here (pipeline.init_worker). `on_leak`: what to do once ImageMagick kept the remains
    of a failed image (a gunicorn worker retires)."""
    global _this_process
    _this_process = WorkerSetUp(os.getpid(), pipeline.init_worker(Limits.from_settings(settings),
                                                                  on_leak))
    return _this_process


# Address space a server's worker may add to what it has once the app is loaded: ImageMagick's
# memory (512 MiB) and map (1 GiB) limits, with room for the encoders' buffers. Past it an
# allocation fails.
WORKER_ADDRESS_SPACE = 2 * 2**30


def set_up_server_worker(settings: Settings, retire: Callable[[], None]) -> WorkerSetUp:
    """`init_worker` for a worker of a server, which also bounds its address space and `retire`s
    (finishes its request, then exits, to be replaced) once ImageMagick kept the remains of a
    failed image: by our gunicorn hook (post_worker_init), or on the first request of a worker no
    hook of ours set up."""
    set_up = init_worker(settings, on_leak=retire)
    magick.limit_address_space(WORKER_ADDRESS_SPACE)
    return set_up


def _retire_this_process() -> None:
    """Retire a worker without a handle on it: SIGTERM is every gunicorn worker's graceful exit (it
    finishes the request it is on), and ends a process of any other server."""
    os.kill(os.getpid(), signal.SIGTERM)


# The one holder of this process's set-up, for set_up_worker (the app is built before the set-up
# runs, and cannot be handed it), under a lock for a server with threads.
_this_process: WorkerSetUp | None = None
_setting_up = threading.Lock()


def set_up_worker(settings: Settings) -> WorkerSetUp:
    """This process's set-up, made unless this process has it already. Before each request, so that
    a worker that no hook of ours set up (plain `gunicorn wsgi:app`, without our gunicorn.conf.py)
    sets itself up on its first request as a server's worker, and serves as `images server`'s do."""
    set_up = _this_process
    if set_up is None or set_up.pid != os.getpid():
        with _setting_up:
            set_up = _this_process
            if set_up is None or set_up.pid != os.getpid():
                set_up = set_up_server_worker(settings, _retire_this_process)
    return set_up
