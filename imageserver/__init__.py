"""imageserver: upload an image once, get any size of it on demand."""
from __future__ import annotations

from flask import Flask

from .version import __version__


def create_app(settings=None) -> Flask:
    """The WSGI app. Build it in each worker, after the fork: it loads ImageMagick."""
    from . import pipeline, web
    from .images import Images
    from .metrics import build_metrics
    from .settings import Settings
    from .storage import build_store

    settings = settings or Settings.from_env()
    pipeline.init_worker(pipeline.Limits.from_settings(settings))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.maximum_upload_bytes
    app.extensions["images"] = Images(settings, build_store(settings), build_metrics(settings))
    web.register(app)
    return app


__all__ = ["create_app", "__version__"]
