"""Cache hits answered before Flask: a GET or HEAD of an output already on local disk is sent by this
small WSGI layer, with the checks, headers, metric and 304s of the output view, so that a hit costs
no routing, request context or service call (about a third of a hit's CPU went there).

It answers only what it is sure of: a valid output URL, signed and allowed as the settings require,
whose file exists. Everything else (other URLs, refusals, ranges, If-Match, a file not made yet) goes
on to the Flask app, which answers it as it always has, errors and their metrics included.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Optional
from urllib.parse import parse_qsl
from zlib import adler32

from werkzeug.http import dump_options_header, http_date, is_resource_modified, quote_etag
from werkzeug.wsgi import FileWrapper

from .. import signing
from ..errors import ImageServerError
from ..images import Images
from ..names import check_allowed, parse_output
from ..paths import CACHE_CONTROL, ImageKey

# Requests whose answer is more than "the file, or 304": left to werkzeug's send_file in the app.
_LEFT_TO_THE_APP = ("HTTP_RANGE", "HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE")
_FILE_BUFFER = 8192   # werkzeug's wrap_file default, so that gunicorn sends the file alike


class CacheHits:
    """WSGI middleware: serve existing outputs from disk, pass every other request to `app`."""

    def __init__(self, app: Callable, images: Images):
        self.app = app
        self.images = images

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method == "GET" or method == "HEAD":
            answer = self._hit(environ, start_response, method == "HEAD")
            if answer is not None:
                return answer
        return self.app(environ, start_response)

    def _hit(self, environ: dict, start_response: Callable, head: bool) -> Optional[Iterable[bytes]]:
        path = environ.get("PATH_INFO", "")
        parts = path.split("/")
        if len(parts) != 7 or parts[0] or any(name in environ for name in _LEFT_TO_THE_APP):
            return None
        settings = self.images.settings
        try:
            key = ImageKey.from_url_parts(*parts[1:6])
            spec = parse_output(parts[6], settings)
            if settings.signing_key:
                signing.check(settings.signing_key, signing.message(path), _sig(environ))
            check_allowed(spec, settings)
        except ImageServerError:
            return None   # the app refuses it, with its message and the failure metric
        file_path = key.local_file(self.images.base, spec.name)
        try:
            stat = os.stat(file_path)
        except OSError:
            return None   # not made yet (or gone): a miss
        etag = quote_etag(f"{stat.st_mtime}-{stat.st_size}-{adler32(file_path.encode()) & 0xFFFFFFFF}")
        last_modified = http_date(stat.st_mtime)
        self.images.metrics.incr("processing.version.noop")
        headers = [("Content-Disposition", dump_options_header("inline", {"filename": spec.name}))]
        if is_resource_modified(environ, etag, last_modified=last_modified):
            status, body = "200 OK", []
            headers += [("Content-Type", spec.content_type), ("Content-Length", str(stat.st_size)),
                        ("Last-Modified", last_modified)]
            if not head:
                try:
                    opened = open(file_path, "rb")
                except OSError:
                    return None
                body = environ.get("wsgi.file_wrapper", FileWrapper)(opened, _FILE_BUFFER)
        else:
            status, body = "304 NOT MODIFIED", []
        headers += [("Cache-Control", CACHE_CONTROL), ("ETag", etag), ("Accept-Ranges", "bytes"),
                    ("Date", http_date()), ("X-Image-Cache", "hit")]
        start_response(status, headers)
        return body


def _sig(environ: dict) -> Optional[str]:
    """The first ?sig= of the query string, decoded as werkzeug's request.args does."""
    query = environ.get("QUERY_STRING", "")
    if "sig=" not in query:
        return None
    return next((value for name, value in parse_qsl(query, keep_blank_values=True)
                 if name == "sig"), None)

