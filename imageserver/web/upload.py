"""POST /<namespace>: a new image from the raw body, a multipart field `file`, or ?source=<url>."""
from __future__ import annotations

from flask import Blueprint, request

from ..errors import BadRequest
from ..names import parse_output_list
from . import guard_outputs, json_response, service

blueprint = Blueprint("upload", __name__)


@blueprint.post("/<namespace>")
def upload(namespace: str):
    outputs = parse_output_list(request.args.get("outputs", ""), service().settings)
    guard_outputs(outputs, request.args.get("outputs", ""))
    source = request.args.get("source")
    if source:
        return json_response(service().create_from_source(namespace, source, outputs))
    return json_response(service().create(namespace, _body(), outputs))


def _body() -> bytes:
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise BadRequest("the multipart upload has no field named 'file'")
        data = upload.read()
    else:
        data = request.get_data(cache=False)
    if not data:
        raise BadRequest("no image: send it as the body, as a multipart field 'file', or ?source=URL")
    return data
