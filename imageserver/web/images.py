"""An image's files: GET info.json, GET/HEAD an output (made on first request), POST process."""
from __future__ import annotations

from flask import Blueprint, Response, request, send_file

from ..names import parse_output, parse_output_list
from ..paths import CACHE_CONTROL, ImageKey
from . import guard_outputs, json_response, service

blueprint = Blueprint("images", __name__, url_prefix="/<namespace>/<p1>/<p2>/<p3>/<rest>")


@blueprint.url_value_preprocessor
def to_key(endpoint, values):
    values["key"] = ImageKey.from_url_parts(*(values.pop(name) for name in
                                              ("namespace", "p1", "p2", "p3", "rest")))


@blueprint.get("/info.json")
def info(key: ImageKey):
    return json_response(service().info(key))


@blueprint.get("/original")
def original(key: ImageKey):
    path, content_type = service().original(key)
    return _send(path, content_type)


@blueprint.get("/<name>")
def output(key: ImageKey, name: str):
    spec = parse_output(name, service().settings)
    guard_outputs([spec])
    made = service().output(key, spec)
    response = _send(made.path, spec.content_type)
    response.headers["X-Image-Cache"] = made.cache
    if made.pending:    # made and kept here, not yet in the remote store (retried until it is)
        response.headers["X-Image-Stored"] = "pending"
    return response


@blueprint.post("/process")
def process(key: ImageKey):
    specs = parse_output_list(request.args.get("outputs", ""), service().settings)
    guard_outputs(specs, request.args.get("outputs", ""))
    service().info(key)
    service().process(key, specs)
    return Response(status=200)


def _send(path: str, content_type: str) -> Response:
    """A file named by its content: cache it for a year, and answer revalidations with 304."""
    response = send_file(path, mimetype=content_type, conditional=True, etag=True)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


