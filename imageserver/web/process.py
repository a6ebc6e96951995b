"""An image's outputs: GET/HEAD one (made on its first request), POST process (make several now).

A `.auto` output is the output in the format chosen by the request's Accept header (Images.
choose_format): answered with that format's file and type, and `Vary: Accept`, for caches."""
from __future__ import annotations

from flask import Response, request

from ..names import parse_output, parse_output_list
from ..paths import ImageKey
from . import guard_outputs, image_blueprint, send_image_file, service

blueprint = image_blueprint("process", __name__)


@blueprint.get("/<name>")
def output(key: ImageKey, name: str):
    spec = parse_output(name, service().settings)
    guard_outputs([spec])
    auto = spec.is_auto
    if auto:   # one of the formats --allowed_outputs allows for it
        spec = service().choose_format(key, spec, request.headers.get("Accept", ""))
    result = service().output(key, spec)
    response = send_image_file(result.path, spec.content_type)
    response.headers["X-Image-Cache"] = result.cache
    if result.pending:    # made and kept here, not yet in the remote store (retried until it is)
        response.headers["X-Image-Stored"] = "pending"
    if auto:
        response.vary.add("Accept")
    return response


@blueprint.post("/process")
def process(key: ImageKey):
    specs = parse_output_list(request.args.get("outputs", ""), service().settings)
    guard_outputs(specs, request.args.get("outputs", ""))
    service().info(key)
    service().process(key, specs)
    return Response(status=200)
