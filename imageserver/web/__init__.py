"""The HTTP layer: thin blueprints, and the one error handler that answers every failure as JSON."""
from __future__ import annotations

import json

from typing import Iterable, Optional

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from .. import signing
from ..errors import ImageServerError
from ..images import Images
from ..names import OutputSpec, check_allowed


def service() -> Images:
    return current_app.extensions["images"]


def json_response(body: bytes | dict, status: int = 200) -> Response:
    if isinstance(body, dict):
        body = (json.dumps(body, indent=2) + "\n").encode()
    return Response(body, status=status, mimetype="application/json")


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def guard_outputs(specs: Iterable[OutputSpec], outputs: Optional[str] = None) -> None:
    """Refuse outputs that --allowed_outputs does not list, and, with --signing_key, a request without
    a valid ?sig= of its path (and of its ?outputs=, which is None for a single output's URL)."""
    specs = list(specs)
    settings = service().settings
    if settings.signing_key and (outputs is None or specs):
        signing.check(settings.signing_key, signing.message(request.path, outputs),
                      request.args.get("sig"))
    for spec in specs:
        check_allowed(spec, settings)


def register(app: Flask) -> None:
    from . import api, images as image_views, status, upload

    app.register_blueprint(api.blueprint)
    app.register_blueprint(status.blueprint)
    app.register_blueprint(upload.blueprint)
    app.register_blueprint(image_views.blueprint)

    @app.errorhandler(ImageServerError)
    def our_error(error: ImageServerError):
        count_output_failure()
        if error.status >= 500:
            app.logger.warning("%s: %s", type(error).__name__, error.message)
        return error_response(error.status, error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        count_output_failure()
        return error_response(error.code or 500, error.description or error.name)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        count_output_failure()
        app.logger.exception("unexpected error")
        return error_response(500, "internal error")


def count_output_failure() -> None:
    """`image_request_fail`: a request for an output (an image of some size) is failing."""
    if request.endpoint == "images.output":
        service().metrics.incr("image_request_fail")
