"""The worker answers a plain request for an output on disk itself, before gunicorn reads it, with the
answer and access-log line gunicorn would have written (imageserver/worker.py, early_hits.py); every
other request is gunicorn's. Our worker, with gunicorn's own settings for it, on a socket pair."""
from __future__ import annotations

import os
import signal
import socket
import threading
from types import SimpleNamespace
from typing import Callable, Iterator

import gunicorn.http
import pytest
from flask import Flask
from gunicorn.config import Config

from imageserver import gunicorn_conf, signing
from imageserver.access_log import AccessLogger
from imageserver.worker import JsonErrorWorker
from tests import pictures
from tests.helpers import folder_of

CLIENT = ("127.0.0.1", 50123)
LISTENER = SimpleNamespace(getsockname=lambda: ("127.0.0.1", 8000))
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"
SIGNING_KEY = "early-hits-test-key"


@pytest.fixture
def access_log(tmp_path) -> str:
    return str(tmp_path / "access.log")


@pytest.fixture
def make_worker(access_log) -> Iterator[Callable[[Flask], JsonErrorWorker]]:
    """Our worker for an app, with gunicorn's settings as `images server` makes them, and its access
    log."""
    made = []

    def make(app: Flask) -> JsonErrorWorker:
        cfg = Config()
        gunicorn_conf.configure(cfg, app.extensions["images"].settings)
        cfg.set("accesslog", access_log)
        log = AccessLogger(cfg)
        worker = JsonErrorWorker(1, os.getpid(), [], SimpleNamespace(wsgi=lambda: app), 30, cfg,
                                 log)
        worker.load_wsgi()
        assert worker.outputs is not None
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.tmp.close()
        for handler in worker.log.access_log.handlers + worker.log.error_log.handlers:
            handler.close()


@pytest.fixture
def worker(make_worker, app) -> JsonErrorWorker:
    return make_worker(app)


@pytest.fixture
def parsed(monkeypatch) -> list:
    """The requests gunicorn's parser was asked to read."""
    calls = []
    get_parser = gunicorn.http.get_parser

    def counted(*args, **kwargs):
        calls.append(args)
        return get_parser(*args, **kwargs)

    monkeypatch.setattr(gunicorn.http, "get_parser", counted)
    return calls


@pytest.fixture
def output(client) -> str:
    """The path of an output already made."""
    path = folder_of(client.post("/p", data=pictures.photo(400, 300)).json["hash"]) + "/x120.webp"
    assert client.get(path).headers["X-Image-Cache"] == "made"
    return path


def ask(worker: JsonErrorWorker, head: str, rest: str = "") -> bytes:
    """What the worker answers to `head`, and to `rest` sent a moment later (once it waits)."""
    server, client = socket.socketpair()
    with server, client:
        client.sendall(head.encode())
        if rest:
            threading.Timer(0.5, client.sendall, [rest.encode()]).start()
        worker.handle(LISTENER, server, CLIENT)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def parts(reply: bytes) -> tuple[list[bytes], bytes]:
    """The lines of a reply's head but its Date, and its body."""
    head, _, body = reply.partition(b"\r\n\r\n")
    return [line for line in head.split(b"\r\n") if not line.startswith(b"Date: ")], body


def log_lines(path: str) -> list[str]:
    """The access log's lines, without the time and the duration."""
    with open(path) as log:
        return [line.split("] ", 1)[1].rsplit(" ", 2)[0] + " " + line.rsplit(" ", 1)[1]
                for line in log.read().splitlines()]


@pytest.mark.parametrize("method, version, headers", [
    ("GET", "1.1", "Host: x\r\nUser-Agent: test\r\n"),
    ("HEAD", "1.1", "Host: x\r\n"),
    ("GET", "1.0", ""),
    ("GET", "1.1", "If-None-Match: *\r\n"),
    ("GET", "1.1", f"If-Modified-Since: {FUTURE}\r\n"),
    ("GET", "1.1", 'If-None-Match: "another"\r\n'),
])
def test_a_hit_is_answered_early_as_gunicorn_answers_it(worker, parsed, output, access_log, method,
                                                        version, headers):
    line = f"{method} {output} HTTP/{version}\r\n"
    early = ask(worker, line + headers + "\r\n")
    assert parsed == []
    # The same request arriving in two pieces is not whole when the worker looks: gunicorn's.
    late = ask(worker, line, headers + "\r\n")
    assert len(parsed) == 1
    assert parts(early) == parts(late)
    head, body = parts(early)
    assert head[0].startswith(f"HTTP/{version} ".encode())
    assert b"X-Image-Cache: hit" in head
    if head[0].endswith(b" 200 OK") and method == "GET":
        decoded = pictures.decode(body)
        assert (decoded.format, decoded.width, decoded.height) == ("WEBP", 120, 120)
    else:
        assert body == b""
    first, second = log_lines(access_log)
    assert first == second and first.endswith(" cache=hit")


def test_everything_else_is_gunicorns(worker, parsed, output):
    missing = output.replace("x120.webp", "x60.webp")
    for request in (f"GET {missing} HTTP/1.1\r\n\r\n",                  # not made yet
                    f"GET {output} HTTP/1.1\r\nRange: bytes=0-9\r\n\r\n",
                    f"POST {output} HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                    f"GET {output}x HTTP/1.1\r\n\r\n"):
        ask(worker, request)
    assert len(parsed) == 4
    head, body = parts(ask(worker, f"GET {missing} HTTP/1.1\r\n\r\n"))
    assert b"X-Image-Cache: hit" in head and pictures.decode(body).width == 60


def test_a_client_gone_before_its_answer_costs_nothing(worker, output, access_log):
    server, client = socket.socketpair()
    with server:
        client.sendall(f"GET {output} HTTP/1.1\r\n\r\n".encode())
        client.close()
        worker.handle(LISTENER, server, CLIENT)
    assert worker.alive and worker.nr == 1
    assert log_lines(access_log)[-1].endswith(" cache=hit")


def test_signatures_and_allowed_outputs_hold_early(make_worker, make_app, parsed):
    app = make_app("--signing_key", SIGNING_KEY, "--allowed_outputs", "x120.webp")
    worker = make_worker(app)
    path = folder_of(app.test_client().post("/p", data=pictures.photo(400, 300)).json["hash"])
    signed = signing.sign_url(SIGNING_KEY, path + "/x120.webp")
    assert "?sig=" in signed
    assert ask(worker, f"GET {signed} HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 OK\r\n")
    assert len(parsed) == 1          # made now: gunicorn's
    head, body = parts(ask(worker, f"GET {signed} HTTP/1.1\r\n\r\n"))
    assert len(parsed) == 1 and b"X-Image-Cache: hit" in head and pictures.decode(body).width == 120
    unsigned = ask(worker, f"GET {path}/x120.webp HTTP/1.1\r\n\r\n")
    forged = ask(worker, f"GET {signed[:-2]}xx HTTP/1.1\r\n\r\n")
    not_allowed = ask(worker, f"GET {signing.sign_url(SIGNING_KEY, path + '/x60.webp')} "
                              f"HTTP/1.1\r\n\r\n")
    assert len(parsed) == 4
    assert [reply.split(b"\r\n", 1)[0] for reply in (unsigned, forged, not_allowed)] == \
        [b"HTTP/1.1 403 FORBIDDEN"] * 3


@pytest.mark.parametrize("early", [True, False])
def test_a_client_that_sends_nothing_gets_the_timeout_answer(worker, early):
    """The master aborts a worker past its timeout (SIGABRT, gunicorn's handle_abort); here a timer
    stands in for the master's signal, while the worker waits for a request that never comes."""
    if not early:
        worker.outputs = None
    server, client = socket.socketpair()
    previous = signal.signal(signal.SIGALRM, worker.handle_abort)
    try:
        with server, client:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            worker.handle(LISTENER, server, CLIENT)
            reply = client.recv(65536)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert reply.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b'"error": "the request took longer than the 60 s' in reply
    assert not worker.alive
