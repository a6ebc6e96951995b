"""An image's outputs: GET/HEAD one (made on its first request), POST process (make several now).

A `.auto` output is the output in the format chosen by the request's Accept header (Images.
choose_format): answered with that format's file and type, and `Vary: Accept`, for caches."""
from __future__ import annotations

from urllib.parse import quote

from flask import Response, request
from werkzeug.http import dump_options_header

from imageserver.core.names import OutputSpec, parse_output, parse_output_list
from imageserver.core.paths import (
    ACCEL_HEADER,
    ACCEL_LOCATION,
    ACCEL_LOCATION_VARY_ACCEPT,
    CACHE_CONTROL,
    ImageKey,
)
from imageserver.web import guard_outputs, image_blueprint, send_image_file, service

blueprint = image_blueprint("process", __name__)


@blueprint.get("/<name>")
def output(key: ImageKey, name: str):
    spec = parse_output(name, service().settings)
    guard_outputs([spec])
    auto = spec.is_auto
    if auto:   # one of the formats --allowed_outputs allows for it
        spec = service().choose_format(key, spec, request.headers.get("Accept", ""))
    result = service().output(key, spec)
    if result.cache == "hit" and request.headers.get(ACCEL_HEADER) == "on":
        return sent_by_nginx(key, spec, vary_accept=auto)
    response = send_image_file(result.path, spec.content_type, spec.name)
    response.headers["X-Image-Cache"] = result.cache
    if result.pending:    # made and kept here, not yet in the remote store (retried until it is)
        response.headers["X-Image-Stored"] = "pending"
    if auto:
        response.vary.add("Accept")
    return response


def sent_by_nginx(key: ImageKey, spec: OutputSpec, vary_accept: bool = False) -> Response:
    """The answer that has the nginx block in front send an output on disk (X-Accel-Redirect to its
    internal location), with its own headers, ranges and 304s: checked here, sent by nginx. The path
    is the output's file in the store, made of the checked key and canonical name, never of the
    request's own text. The answer to `.auto` goes through the location that adds `Vary: Accept`."""
    response = Response(status=200, mimetype=spec.content_type)
    location = ACCEL_LOCATION_VARY_ACCEPT if vary_accept else ACCEL_LOCATION
    response.headers["X-Accel-Redirect"] = quote(f"{location}/{key.folder}/{spec.file}")
    response.headers["Content-Disposition"] = dump_options_header("inline", {"filename": spec.name})
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["X-Image-Cache"] = "hit"
    return response


@blueprint.post("/process")
def process(key: ImageKey):
    specs = parse_output_list(request.args.get("outputs", ""), service().settings)
    guard_outputs(specs, request.args.get("outputs", ""))
    service().info(key)
    service().process(key, specs)
    return Response(status=200)
