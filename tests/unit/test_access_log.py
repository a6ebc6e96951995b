import datetime
import logging
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from imageserver.serving.access_log import FORMAT, AccessLogger

ENVIRON = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "GET", "QUERY_STRING": "sig=abc",
           "RAW_URI": "/p/6e0/072/682/e66287b662827da75b244a3/x300.jpg?sig=abc",
           "PATH_INFO": "/p/6e0/072/682/e66287b662827da75b244a3/x300.jpg",
           "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_USER_AGENT": "curl", "wsgi.url_scheme": "http"}


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def written(logger_class, resp, environ) -> str:
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", FORMAT)
    logger = logger_class(cfg)
    logger.now = lambda: "[26/Nov/2026:10:00:00 +0000]"
    lines = Lines()
    logger.access_log.handlers = [lines]
    request = SimpleNamespace(headers=[("HOST", "localhost"), ("USER-AGENT", "curl")])
    logger.access(resp, request, environ, datetime.timedelta(seconds=1, microseconds=234_567))
    return lines.lines[0]


@pytest.mark.parametrize("status, headers", [
    ("200 OK", [("Content-Type", "image/jpeg"), ("Content-Length", "2693"),
                ("X-Image-Cache", "made")]),
    ("304 NOT MODIFIED", [("ETag", '"x"'), ("x-image-cache", "hit")]),
    ("404 NOT FOUND", [("Content-Type", "application/json"), ("Content-Length", "50")]),
])
def test_the_line_is_the_one_gunicorn_writes_for_the_format(status, headers):
    resp = SimpleNamespace(status=status, headers=headers, sent=None)
    ours = written(AccessLogger, resp, ENVIRON)
    assert ours == written(Logger, resp, ENVIRON)
    assert ours.startswith('[26/Nov/2026:10:00:00 +0000] 127.0.0.1 "GET /p/6e0/')
    assert " 1234ms cache=" in ours


@pytest.mark.parametrize("raw_uri", [
    '/p/x" 200 1 0ms cache=hit "/forged.jpg',   # a quote would end the request's field early
    '/a\\"b',
    '/a"\x1b[2J\x00\r\nforged line',          # control characters: gunicorn's parser refuses them
])
def test_quotes_in_a_request_are_escaped_as_gunicorn_escapes_them(raw_uri):
    resp = SimpleNamespace(status="404 NOT FOUND", headers=[("Content-Length", "50")], sent=None)
    environ = {**ENVIRON, "RAW_URI": raw_uri}
    ours = written(AccessLogger, resp, environ)
    assert ours == written(Logger, resp, environ)
    request_field = ours.split(" ", 3)[3].rsplit(" 404 ", 1)[0]
    assert request_field == '"GET ' + raw_uri.replace('"', '\\"') + ' HTTP/1.1"'
