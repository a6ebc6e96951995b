"""The app factory: the WSGI app, its service (`Images`) and its blueprints."""
from __future__ import annotations

from flask import Flask

from imageserver import web
from imageserver.core.metrics import build_metrics
from imageserver.core.settings import Settings
from imageserver.core.shared import StopFlag
from imageserver.images.service import Images
from imageserver.images.setup import set_up_worker
from imageserver.storage import build_uploads


def create_app(settings: Settings | None = None, stopping: StopFlag | None = None) -> Flask:
    """The WSGI app. Building it changes nothing outside it (a test builds one in its own process):
    a process that serves it runs `init_worker` before its first request (our gunicorn hook, or the
    app itself: `set_up_worker`), whose findings each request hands to `Images`. Build it after the
    fork: it loads ImageMagick's library.

    `stopping` is the master's flag, set once a graceful stop has begun (see `shared.StopFlag`).
    """
    settings = settings or Settings.from_env()
    # No static folder: its route would answer OPTIONS, and shadow the images of namespace "static".
    app = Flask("imageserver", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.maximum_upload_bytes
    metrics = build_metrics(settings)
    store, uploads = build_uploads(settings, metrics)
    images = Images(settings, store, metrics, uploads)
    app.extensions["images"] = images
    app.extensions["stopping"] = stopping or StopFlag()
    app.before_request(lambda: images.runs_in(set_up_worker(settings)))
    web.register(app)
    return app
