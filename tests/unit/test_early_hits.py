"""A plain request is read as gunicorn reads it, anything else is left to gunicorn, and the head of
an early answer is the one gunicorn writes (imageserver/early_hits.py)."""
from __future__ import annotations

import socket

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from imageserver import early_hits

CLIENT = ("127.0.0.1", 50123)
OUTPUT = "/p/6e0/072/682/e66287b662827da75b244a3/x300.jpg"


def gunicorns_environ(head: bytes) -> dict:
    cfg = Config()
    request = next(RequestParser(cfg, iter([head]), CLIENT))
    ours, theirs = socket.socketpair()
    with ours, theirs:
        return wsgi.create(request, ours, CLIENT, ("127.0.0.1", 8000), cfg)[1]


@pytest.mark.parametrize("head", [
    f"GET {OUTPUT} HTTP/1.1\r\nHost: localhost:8000\r\n\r\n",
    f"HEAD {OUTPUT} HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    f"GET {OUTPUT}?sig=Ab_-9z&x=%20y HTTP/1.0\r\n\r\n",
    f"GET {OUTPUT}? HTTP/1.1\r\nHost: x\r\n\r\n",
    f'GET {OUTPUT} HTTP/1.1\r\nIf-None-Match: "a"\r\nif-none-match:  "b" \t\r\n'
    f"If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\nX-Empty:\r\n\r\n",
    "GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
])
def test_a_plain_request_is_read_as_gunicorn_reads_it(head):
    data = head.encode() + b"and the next request"
    request = early_hits.plain_request(data, CLIENT, field_limit=100)
    assert request is not None
    assert request.length == len(head)
    expected = gunicorns_environ(head.encode())
    assert {key: expected.get(key) for key in request.environ} == request.environ


@pytest.mark.parametrize("head", [
    f"GET {OUTPUT} HTTP/1.1\r\nHost: x\r\n",                      # not whole yet
    f"POST {OUTPUT} HTTP/1.1\r\nHost: x\r\n\r\n",
    f"get {OUTPUT} HTTP/1.1\r\n\r\n",
    f"GET {OUTPUT} HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    f"GET {OUTPUT} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    f"GET {OUTPUT} HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
    f"GET {OUTPUT} HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    f"GET {OUTPUT} HTTP/1.1\r\nX_Forwarded_For: 10.0.0.1\r\n\r\n",   # "_" in a name
    f"GET {OUTPUT} HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n",                 # obsolete folding
    f"GET {OUTPUT} HTTP/1.1\r\nX-A : b\r\n\r\n",
    f"GET {OUTPUT} HTTP/1.1\r\nX-A: caf\u00e9\r\n\r\n",
    f"GET {OUTPUT} HTTP/1.1\nHost: x\n\n",
    f"GET {OUTPUT} HTTP/2.0\r\n\r\n",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    f"GET http://example.com{OUTPUT} HTTP/1.1\r\n\r\n",
    "GET /p/6e0/072/682/e66287b662827da75b244a3/x%33300.jpg HTTP/1.1\r\n\r\n",
    f"GET {OUTPUT}#top HTTP/1.1\r\n\r\n",
    f"GET  {OUTPUT} HTTP/1.1\r\n\r\n",
    f"GET {OUTPUT} HTTP/1.1\r\n" + "X-A: b\r\n" * 101 + "\r\n",          # over the field limit
])
def test_anything_else_is_left_to_gunicorn(head):
    assert early_hits.plain_request(head.encode(), CLIENT, field_limit=100) is None


@pytest.mark.parametrize("protocol, status, headers", [
    ("HTTP/1.1", "200 OK", [("Content-Type", "image/jpeg"), ("Content-Length", "12"),
                            ("X-Image-Cache", "hit")]),
    ("HTTP/1.0", "304 NOT MODIFIED", [("ETag", '"1-2-3"'), ("X-Content-Type-Options", "nosniff")]),
])
def test_the_head_of_an_answer_is_the_one_gunicorn_writes(protocol, status, headers):
    request = next(RequestParser(Config(), iter([f"GET / {protocol}\r\n\r\n".encode()]), CLIENT))
    server, client = socket.socketpair()
    with server, client:
        response = wsgi.Response(request, server, Config())
        response.force_close()
        response.start_response(status, headers)
        response.send_headers()
        theirs = client.recv(65536)
    ours = early_hits.reply_head(protocol, status, headers)
    assert without_date(ours) == without_date(theirs)
    assert ours.startswith(f"{protocol} {status}\r\n".encode())


def without_date(head: bytes) -> list[bytes]:
    return [line for line in head.split(b"\r\n") if not line.startswith(b"Date: ")]
