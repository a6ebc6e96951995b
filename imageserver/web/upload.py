"""POST /<namespace>: a new image from the raw body, a multipart field `file`, or ?source=<url>."""
from __future__ import annotations

from flask import Blueprint, request

from imageserver.core.errors import BadRequest, PayloadTooLarge
from imageserver.core.names import parse_output_list
from imageserver.web import guard_outputs, json_response, service

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
    _refuse_a_longer_stream()
    if not data:
        raise BadRequest("no image: send it as the body, as a multipart field 'file', or ?source=URL")
    return data


def _refuse_a_longer_stream() -> None:
    """A body without a Content-Length (chunked) is read up to the limit and quietly cut there;
    one more byte in the stream means it was over."""
    limit = request.max_content_length
    if request.content_length is None and limit is not None and request.environ["wsgi.input"].read(1):
        raise PayloadTooLarge(f"the upload is over the limit of {limit} bytes")
