"""An image's stored facts: GET info.json, and GET its original bytes (as a download)."""
from __future__ import annotations

from imageserver.core.paths import ImageKey
from imageserver.web import image_blueprint, json_response, send_image_file, service

blueprint = image_blueprint("info", __name__)


@blueprint.get("/info.json")
def info(key: ImageKey):
    return json_response(service().info(key))


@blueprint.get("/original")
def original(key: ImageKey):
    path, content_type = service().original(key)
    response = send_image_file(path, content_type)
    # The bytes are whatever a client sent: a browser must save them, never show them as a page.
    extension = content_type.partition("/")[2] if content_type.startswith("image/") else ""
    response.headers.set("Content-Disposition", "attachment",
                         filename=f"{key.hash}.{extension}" if extension else key.hash)
    return response
