"""imageserver: upload an image once, get any size of it on demand.

The package's face: `create_app` (for `wsgi.py` and any WSGI server) and `__version__`. It imports
nothing else: the gunicorn master imports this package, and must not load ImageMagick.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imageserver.core.version import __version__

if TYPE_CHECKING:
    from flask import Flask


def create_app(*args: Any, **kwargs: Any) -> Flask:
    """`imageserver.web.app.create_app`, imported only when called: in a worker, after the fork."""
    from imageserver.web.app import create_app
    return create_app(*args, **kwargs)


__all__ = ["create_app", "__version__"]
