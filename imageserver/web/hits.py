"""Outputs answered before Flask: a GET or HEAD of an output is served by this small WSGI layer, with
the checks, headers, metrics and 304s of the output view. A cache hit then costs no routing, request
context or service call (about a third of a hit's CPU went there), and an output made now no routing
or request context (a fifth of the work around a render).

It answers only what it is sure of: a valid output URL, signed and allowed as the settings require.
Everything else (other URLs, refusals, ranges, If-Match) goes on to the Flask app, which answers it as
it always has, errors and their metrics included.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Optional
from urllib.parse import parse_qsl
from zlib import adler32

from werkzeug.http import dump_options_header, http_date, is_resource_modified, quote_etag
from werkzeug.wsgi import FileWrapper

from .. import signing
from ..errors import ImageServerError
from ..images import Images
from ..names import OutputSpec, check_allowed, parse_output
from ..paths import CACHE_CONTROL, ImageKey
from . import NO_SNIFFING, failure_response

# Requests whose answer is more than "the file, or 304": left to werkzeug's send_file in the app.
_LEFT_TO_THE_APP = ("HTTP_RANGE", "HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE")
_FILE_BUFFER = 8192   # werkzeug's wrap_file default, so that gunicorn sends the file alike


class Outputs:
    """WSGI middleware: answer GET and HEAD of outputs (on disk or made now), pass the rest to `app`."""

    def __init__(self, app: Callable, images: Images, logger: logging.Logger):
        self.app = app
        self.images = images
        self.logger = logger

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        found = self._output(environ)
        if found is None:
            return self.app(environ, start_response)
        key, spec = found
        answer = self._on_disk(environ, key, spec)
        if answer is None:
            try:
                output = self.images.output(key, spec)
                stat = os.stat(output.path)
            except Exception as error:   # answered as the app's error handlers answer
                return self._failure(error)(environ, start_response)
            try:
                answer = _file_answer(environ, spec, output.path, stat, output.cache,
                                      output.pending)
            except OSError:   # removed a moment ago (by hand): the app answers as it would
                return self.app(environ, start_response)
        body: Iterable[bytes] = []
        if answer.body is not None:
            body = environ.get("wsgi.file_wrapper", FileWrapper)(answer.body, _FILE_BUFFER)
        start_response(answer.status, answer.headers + [("Date", http_date())])
        return body

    def hit(self, environ: dict) -> Optional[Answer]:
        """The answer to a GET or HEAD of an output already on disk here; None for any other request
        (which __call__ answers, or the app)."""
        found = self._output(environ)
        return None if found is None else self._on_disk(environ, *found)

    def _output(self, environ: dict) -> Optional[tuple[ImageKey, OutputSpec]]:
        """The output a GET or HEAD asks for, when it is one this layer may answer."""
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return None
        path = environ.get("PATH_INFO", "")
        parts = path.split("/")
        if len(parts) != 7 or parts[0] or any(name in environ for name in _LEFT_TO_THE_APP):
            return None
        settings = self.images.settings
        try:
            key = ImageKey.from_url_parts(*parts[1:6])
            spec = parse_output(parts[6], settings)
            if spec.is_auto:
                return None   # its format depends on Accept: the app's output view chooses it
            if settings.signing_key:
                signing.check(settings.signing_key, signing.message(path), _sig(environ))
            check_allowed(spec, settings)
        except ImageServerError:
            return None   # the app refuses it, with its message and the failure metric
        return key, spec

    def _on_disk(self, environ: dict, key: ImageKey, spec: OutputSpec) -> Optional[Answer]:
        """The answer that sends the output made already, None when it is not (or was removed a
        moment ago)."""
        path = key.local_file(self.images.base, spec.file)
        try:
            answer = _file_answer(environ, spec, path, os.stat(path), "hit", False)
        except OSError:
            return None
        self.images.metrics.incr("processing.version.noop")
        return answer

    def _failure(self, error: Exception):
        """The JSON answer and metric of web.register's error handlers, for a failed output (the
        app's after_request, which adds nosniff, does not run here)."""
        self.images.metrics.incr("image_request_fail")
        response = failure_response(error, self.logger)
        response.headers.update(NO_SNIFFING)
        return response


@dataclass
class Answer:
    """An output's answer: status, headers (all but Date, which the server adds) and the body, the
    output's file opened (None for a HEAD or a 304)."""
    status: str
    headers: list[tuple[str, str]]
    body: Optional[BinaryIO]


def _file_answer(environ: dict, spec: OutputSpec, path: str, stat: os.stat_result, cache: str,
                 pending: bool) -> Answer:
    """The answer that sends the output `path` (`cache`: how it came to be there), or 304 to a
    client whose copy is still good. OSError when the file cannot be opened."""
    etag = quote_etag(f"{stat.st_mtime}-{stat.st_size}-{adler32(path.encode()) & 0xFFFFFFFF}")
    last_modified = http_date(stat.st_mtime)
    headers = [("Content-Disposition", dump_options_header("inline", {"filename": spec.name}))]
    body = None
    revalidating = "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ
    if not revalidating or is_resource_modified(environ, etag, last_modified=last_modified):
        status = "200 OK"
        headers += [("Content-Type", spec.content_type), ("Content-Length", str(stat.st_size)),
                    ("Last-Modified", last_modified)]
        body = None if environ["REQUEST_METHOD"] == "HEAD" else open(path, "rb")
    else:
        status = "304 NOT MODIFIED"
    headers += [("Cache-Control", CACHE_CONTROL), ("ETag", etag), ("Accept-Ranges", "bytes"),
                ("X-Image-Cache", cache), *NO_SNIFFING.items()]
    if pending:    # made and kept here, not yet in the remote store (retried until it is)
        headers.append(("X-Image-Stored", "pending"))
    return Answer(status, headers, body)


def _sig(environ: dict) -> Optional[str]:
    """The first ?sig= of the query string, decoded as werkzeug's request.args does."""
    query = environ.get("QUERY_STRING", "")
    if "sig=" not in query:
        return None
    return next((value for name, value in parse_qsl(query, keep_blank_values=True)
                 if name == "sig"), None)
