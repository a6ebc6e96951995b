"""DELETE /<ns>/<folder>: an image removed everywhere (purge.py), for holders of --purge_key."""
from __future__ import annotations

import hmac

from flask import request
from werkzeug.exceptions import MethodNotAllowed

from imageserver.core.errors import Forbidden, Unauthorized
from imageserver.core.paths import ImageKey
from imageserver.web import image_blueprint, json_response, service

blueprint = image_blueprint("purge", __name__)


@blueprint.delete("")
def purge(key: ImageKey):
    check_purge_key(service().settings.purge_key, request.headers.get("Authorization", ""))
    removed = service().purge(key)
    return json_response({"purged": key.folder, "removed": removed})


def check_purge_key(purge_key: str, authorization: str) -> None:
    """405 on a server without --purge_key (the method is not offered); 401 without a bearer key,
    403 with another key (compared in constant time)."""
    if not purge_key:
        raise MethodNotAllowed(valid_methods=[])
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("a purge needs the header Authorization: Bearer <--purge_key>")
    if not hmac.compare_digest(given.strip().encode(), purge_key.encode()):
        raise Forbidden("the purge key is not this server's --purge_key")
