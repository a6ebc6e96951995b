"""imageserver: upload an image once, get any size of it on demand."""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from flask import Flask

from .version import __version__

if TYPE_CHECKING:
    from .listeners import StopFlag
    from .settings import Settings


def init_worker(settings: Settings) -> None:
    """The set-up of a process that handles images, which concerns the whole process: ImageMagick's
    policy and limits (pipeline.init_worker) and whether files are flushed to disk (--no_fsync).

    Once per process, after any fork: in each gunicorn worker (gunicorn_conf.post_worker_init), and in
    `images process`; never in gunicorn's master. ImageMagick is not fork-safe, and reads its policy
    once, at its first use.
    """
    from . import files, pipeline
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


def create_app(settings: Settings | None = None, stopping: StopFlag | None = None) -> Flask:
    """The WSGI app. Building it changes nothing outside it (a test builds one in its own process):
    a process that serves it runs `init_worker` before its first request (our gunicorn hook, or the
    app itself: `set_up_worker`). Build it after the fork: it loads ImageMagick's library.

    `stopping` is the master's flag, set once a graceful stop has begun (see `listeners.StopFlag`).
    """
    from . import web
    from .images import Images
    from .listeners import StopFlag
    from .metrics import build_metrics
    from .settings import Settings
    from .storage import build_uploads

    settings = settings or Settings.from_env()
    # No static folder: its route would answer OPTIONS, and shadow the images of namespace "static".
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.maximum_upload_bytes
    metrics = build_metrics(settings)
    store, uploads = build_uploads(settings, metrics)
    app.extensions["images"] = Images(settings, store, metrics, uploads)
    app.extensions["stopping"] = stopping or StopFlag()
    app.before_request(lambda: set_up_worker(settings))
    web.register(app)
    return app


__all__ = ["create_app", "init_worker", "__version__"]
