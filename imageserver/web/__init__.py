"""The HTTP layer, one blueprint per part of the design:

    upload   POST /<ns>                               a new image (body, multipart, ?source=)
    info     GET  /<ns>/<folder>/info.json, original  what is stored of an image
    process  GET  /<ns>/<folder>/<output>             an output, made on its first request
             POST /<ns>/<folder>/process              several outputs made now
    purge    DELETE /<ns>/<folder>                    the image removed everywhere (--purge_key)
    status   GET  /status_check
    api      GET  /openapi.json                       the API description

and the one error handler that answers every failure as JSON. Every answer is sent with
`X-Content-Type-Options: nosniff`, and nothing is ever redirected.
"""
from __future__ import annotations

from collections.abc import Iterable

from flask import Blueprint, Flask, Response, current_app, request, send_file
from gunicorn.http import errors as gunicorn_errors
from werkzeug.exceptions import HTTPException

from imageserver.core import signing
from imageserver.core.errors import ImageServerError
from imageserver.core.json_text import pretty
from imageserver.core.names import OutputSpec, check_allowed
from imageserver.core.paths import CACHE_CONTROL, ImageKey
from imageserver.images.service import Images

IMAGE_FOLDER = "/<namespace>/<p1>/<p2>/<p3>/<rest>"
# What gunicorn raises in a view reading a chunked body that breaks the chunked coding, or stops.
UNREADABLE_BODY = (gunicorn_errors.InvalidChunkSize, gunicorn_errors.ChunkMissingTerminator,
                   gunicorn_errors.InvalidChunkExtension, gunicorn_errors.NoMoreData)
# The endpoint of a request for an output, counted in statsd's image_request_fail when it fails.
OUTPUT_ENDPOINT = "process.output"


# On every answer: a browser takes the declared type as it is, so a stored file never becomes a page
# or a script.
NO_SNIFFING = {"X-Content-Type-Options": "nosniff"}


def service() -> Images:
    return current_app.extensions["images"]


def json_response(body: bytes | dict, status: int = 200) -> Response:
    if isinstance(body, dict):
        body = pretty(body)
    return Response(body, status=status, mimetype="application/json")


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def image_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint for the files of one image, under its folder; views get its `key`."""
    blueprint = Blueprint(name, import_name, url_prefix=IMAGE_FOLDER)

    @blueprint.url_value_preprocessor
    def to_key(endpoint, values):
        values["key"] = ImageKey.from_url_parts(*(values.pop(part) for part in
                                                  ("namespace", "p1", "p2", "p3", "rest")))

    return blueprint


def send_image_file(path: str, content_type: str, name: str | None = None) -> Response:
    """A file named by its content: cache it for a year, and answer revalidations with 304. `name`:
    the file name the client is told (Content-Disposition), the file's own by default."""
    response = send_file(path, mimetype=content_type, conditional=True, etag=True,
                         download_name=name)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


def guard_outputs(specs: Iterable[OutputSpec], outputs: str | None = None) -> None:
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
    from imageserver.web import api, info, process, purge, status, upload

    # A path with a doubled slash is not found, rather than redirected: werkzeug's redirects are
    # HTML and build their Location from the Host header, which the client chooses. (Its other
    # redirect, of a rule ending in a slash, cannot happen: no rule here ends in one.)
    app.url_map.merge_slashes = False
    app.url_map.redirect_defaults = False
    # OPTIONS is not part of the API: it gets the JSON 405 any other method gets (Flask 3.1+).
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    for blueprint in (api.blueprint, status.blueprint, upload.blueprint, info.blueprint,
                      process.blueprint, purge.blueprint):
        app.register_blueprint(blueprint)

    @app.after_request
    def no_sniffing(response: Response) -> Response:
        response.headers.update(NO_SNIFFING)
        return response

    @app.errorhandler(ImageServerError)
    def our_error(error: ImageServerError):
        count_output_failure()
        return failure_response(error, app.logger)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        count_output_failure()
        response = error_response(error.code or 500, error.description or error.name)
        allowed = getattr(error, "valid_methods", None)     # MethodNotAllowed's
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    def unreadable_body(error: Exception):
        return error_response(400, f"the request body cannot be read: {error}")

    for kind in UNREADABLE_BODY:
        app.register_error_handler(kind, unreadable_body)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        count_output_failure()
        return failure_response(error, app.logger)


def failure_response(error: Exception, logger) -> Response:
    """The JSON answer to a request that failed with `error`: its own status and message for ours
    (logged when the server is at fault), a bare 500 with the traceback in the log for any other."""
    if not isinstance(error, ImageServerError):
        logger.exception("unexpected error")
        return error_response(500, "internal error")
    if error.status >= 500:
        logger.warning("%s: %s", type(error).__name__, error.message)
    response = error_response(error.status, error.message)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def count_output_failure() -> None:
    """`image_request_fail`: a request for an output (an image of some size) is failing."""
    if request.endpoint == OUTPUT_ENDPOINT:
        service().metrics.incr("image_request_fail")
