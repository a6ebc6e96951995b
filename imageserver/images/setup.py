"""The set-up of a process that handles images: once per process, after any fork.

In each gunicorn worker (gunicorn_conf.post_worker_init), in `images process`, and in any worker
that no hook of ours set up (plain `gunicorn wsgi:app`), on its first request; never in gunicorn's
master. ImageMagick is not fork-safe, and reads its policy once, at its first use.
"""
from __future__ import annotations

import os
import threading

from imageserver.core import files
from imageserver.core.settings import Settings
from imageserver.imaging import pipeline


def init_worker(settings: Settings) -> None:
    """What concerns the whole process: ImageMagick's policy and limits (pipeline.init_worker) and
    whether files are flushed to disk (--no_fsync)."""
    files.set_durable(not settings.no_fsync)
    pipeline.init_worker(pipeline.Limits.from_settings(settings))
    _set_up_in[:] = [os.getpid()]


# The process init_worker set up (a forked child has its own to set up), under a lock for a server
# with threads.
_set_up_in: list = []
_setting_up = threading.Lock()


def set_up_worker(settings: Settings) -> None:
    """`init_worker`, unless this process ran it already: before each request, so that a worker that
    no hook of ours set up (plain `gunicorn wsgi:app`, without our gunicorn.conf.py) sets itself up
    on its first request, and serves as `images server`'s do."""
    if _set_up_in != [os.getpid()]:
        with _setting_up:
            if _set_up_in != [os.getpid()]:
                init_worker(settings)
